"""Asynchronous image-to-video, as go-livepeer's gateway offers it.

``POST /image-to-video`` with ``Prefer: respond-async`` answers ``202 {"request_id": "..."}`` at once and
runs the job in the background; ``POST /image-to-video/result`` with ``{"request_id": "..."}`` answers
``202 {"status": "processing"}`` until it ends, then ``200 {"status": "complete", "result": {...}}`` with
the video response, or with ``{"error": {"message": ...}}`` if it failed. Finished jobs are kept for the
result TTL; they live in memory, so a restarted gateway no longer knows them (404).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import JobError


@dataclass
class _Entry:
    task: asyncio.Task[Response]
    finished_at: float | None = None


class AsyncJobs:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._jobs: dict[str, _Entry] = {}

    def wants_async(self, request: Request) -> bool:
        return "respond-async" in request.headers.get("prefer", "").lower()

    def start(self, request_id: str, work: Callable[[], Awaitable[Response]]) -> Response:
        self._sweep()
        entry = _Entry(asyncio.ensure_future(work()))
        entry.task.add_done_callback(lambda _: setattr(entry, "finished_at", time.monotonic()))
        self._jobs[request_id] = entry
        return JSONResponse({"request_id": request_id}, status_code=202)

    async def result(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            request_id = body["request_id"]
        except (ValueError, KeyError, TypeError):
            return _error(400, 'send {"request_id": "<id from the 202 answer>"}')
        entry = self._jobs.get(str(request_id))
        if entry is None:
            return _error(404, f"no image-to-video job {request_id!r} (unknown, or its result expired)")
        if not entry.task.done():
            return JSONResponse({"status": "processing"}, status_code=202)
        result: dict[str, Any]
        try:
            answer = entry.task.result()
            data = json.loads(bytes(answer.body)) if answer.body else {}
            result = data if answer.status_code == 200 else {"error": data.get("error") or {"message": "failed"}}
        except (JobError, ValueError) as exc:
            result = {"error": {"message": str(exc)}}
        return JSONResponse({"status": "complete", "result": result})

    def close(self) -> None:
        for entry in self._jobs.values():
            entry.task.cancel()

    def _sweep(self) -> None:
        now = time.monotonic()
        for request_id, entry in list(self._jobs.items()):
            if entry.finished_at is not None and now - entry.finished_at > self.ttl:
                del self._jobs[request_id]


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message}, "detail": {"msg": message}}, status_code=status)
