"""Asynchronous image-to-video, as go-livepeer's gateway offers it.

``POST /image-to-video`` with ``Prefer: respond-async`` answers ``202 {"request_id": "..."}`` at once and
runs the job in the background; ``POST /image-to-video/result`` with ``{"request_id": "..."}`` answers
``202 {"status": "processing"}`` until it ends, then ``200 {"status": "complete", "result": {...}}`` with
the video response, or with ``{"error": {"message": ...}}`` if it failed. Finished jobs are kept for the
result TTL, in memory and in ``async_jobs.sqlite`` in the gateway's data dir, so a restarted gateway still answers
them (the video files themselves are in the result store); a job still running when the gateway stops is lost
(404 after the restart).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import JobError
from lpnode.http_relay import read_at_most


@dataclass
class _Entry:
    task: asyncio.Task[Response]
    finished_at: float | None = None


RESULT_REQUEST_BYTES = 64 * 1024  # a result request is {"request_id": ...}


_SCHEMA = """CREATE TABLE IF NOT EXISTS async_jobs (
    request_id TEXT PRIMARY KEY, result TEXT NOT NULL, finished REAL NOT NULL
)"""


class AsyncJobs:
    def __init__(self, ttl_seconds: float, database: Path | None = None) -> None:
        """``database``: where finished results are kept across restarts (``None``: in memory only)."""
        self.ttl = ttl_seconds
        self._jobs: dict[str, _Entry] = {}
        self._db: sqlite3.Connection | None = None
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
            self._db.execute(_SCHEMA)
            self._db.execute("DELETE FROM async_jobs WHERE finished < ?", (time.time() - self.ttl,))

    def wants_async(self, request: Request) -> bool:
        return "respond-async" in request.headers.get("prefer", "").lower()

    def start(self, request_id: str, work: Callable[[], Awaitable[Response]]) -> Response:
        self._sweep()
        entry = _Entry(asyncio.ensure_future(self._run(request_id, work)))
        entry.task.add_done_callback(lambda _: setattr(entry, "finished_at", time.monotonic()))
        self._jobs[request_id] = entry
        return JSONResponse({"request_id": request_id}, status_code=202)

    async def result(self, request: Request) -> Response:
        try:
            body = json.loads(await read_at_most(request.stream(), RESULT_REQUEST_BYTES, lambda: ValueError()))
            request_id = body["request_id"]
        except (ValueError, KeyError, TypeError):
            return _error(400, 'send {"request_id": "<id from the 202 answer>"}')
        entry = self._jobs.get(str(request_id))
        if entry is None:
            stored = await asyncio.to_thread(self._stored, str(request_id))
            if stored is None:
                return _error(404, f"no image-to-video job {request_id!r} (unknown, or its result expired)")
            return JSONResponse({"status": "complete", "result": stored})
        if not entry.task.done():
            return JSONResponse({"status": "processing"}, status_code=202)
        return JSONResponse({"status": "complete", "result": _result(entry.task)})

    async def _run(self, request_id: str, work: Callable[[], Awaitable[Response]]) -> Response:
        answer = await work()
        if self._db is not None:
            result = json.dumps(_answer_result(answer))
            await asyncio.to_thread(self._store, request_id, result)
        return answer

    def _store(self, request_id: str, result: str) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO async_jobs (request_id, result, finished) VALUES (?, ?, ?)",
            (request_id, result, time.time()),
        )

    def _stored(self, request_id: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT result FROM async_jobs WHERE request_id = ? AND finished >= ?", (request_id, time.time() - self.ttl)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def close(self) -> None:
        for entry in self._jobs.values():
            entry.task.cancel()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _sweep(self) -> None:
        now = time.monotonic()
        for request_id, entry in list(self._jobs.items()):
            if entry.finished_at is not None and now - entry.finished_at > self.ttl:
                del self._jobs[request_id]


def _result(task: asyncio.Task[Response]) -> dict[str, Any]:
    try:
        return _answer_result(task.result())
    except JobError as exc:
        return {"error": {"message": str(exc)}}


def _answer_result(answer: Response) -> dict[str, Any]:
    try:
        data = json.loads(bytes(answer.body)) if answer.body else {}
    except ValueError as exc:
        return {"error": {"message": str(exc)}}
    return dict(data) if answer.status_code == 200 else {"error": data.get("error") or {"message": "failed"}}


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message}, "detail": {"msg": message}}, status_code=status)
