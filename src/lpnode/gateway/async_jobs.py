"""Asynchronous image-to-video, as go-livepeer's gateway offers it.

``POST /image-to-video`` with ``Prefer: respond-async`` answers ``202 {"request_id": "..."}`` at once and
runs the job in the background; ``POST /image-to-video/result`` with ``{"request_id": "..."}`` answers
``202 {"status": "processing"}`` until it ends, then ``200 {"status": "complete", "result": {...}}`` with
the video response, or with ``{"error": {"message": ...}}`` if it failed.

Jobs are kept for the result TTL in memory and in the gateway's state (:mod:`lpnode.gateway.state`:
``async_jobs.sqlite`` in the data dir, or the PostgreSQL database of ``--db-url``): a restarted gateway still
answers them, and so does every other gateway on the same database, which answers ``processing`` while the job
runs on the gateway that took it and the result once it is done (its video URLs point at the gateway that ran
it, whose result store holds the files). A job whose gateway stopped before it finished is answered with an
error saying so: at once after a clean stop, or once the job's deadline (``running_seconds``) has passed after a
crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import JobError
from lpnode.gateway.state import GatewayState
from lpnode.gateway.state_sqlite import SqliteState
from lpnode.http_relay import read_at_most
from lpnode.logs import log_event

log = logging.getLogger("lpnode.gateway.async_jobs")


@dataclass
class _Entry:
    task: asyncio.Task[Response]
    finished_at: float | None = None


RESULT_REQUEST_BYTES = 64 * 1024  # a result request is {"request_id": ...}
STOPPED = "the gateway running this job stopped before it finished; submit it again"


class AsyncJobs:
    def __init__(
        self, ttl_seconds: float, database: GatewayState | Path | None = None, *, running_seconds: float = 600.0
    ) -> None:
        """``database``: the state that keeps jobs across restarts and gateways, or the SQLite file to keep them in
        (``None``: in memory only). ``running_seconds``: the longest a job may run (the gateway's timeout)."""
        self.ttl = ttl_seconds
        self.running_seconds = running_seconds
        self._jobs: dict[str, _Entry] = {}
        self._state: GatewayState | None
        if isinstance(database, Path):
            self._state = SqliteState(database.parent / "gateway.sqlite", jobs_path=database)
        else:
            self._state = database
        if self._state is not None:
            self._state.drop_jobs(time.time() - self.ttl)

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
            request_id = str(body["request_id"])
        except (ValueError, KeyError, TypeError):
            return _error(400, 'send {"request_id": "<id from the 202 answer>"}')
        entry = self._jobs.get(request_id)
        if entry is None:
            return await self._stored_answer(request_id)
        if not entry.task.done():
            return JSONResponse({"status": "processing"}, status_code=202)
        return JSONResponse({"status": "complete", "result": _result(entry.task)})

    async def _stored_answer(self, request_id: str) -> Response:
        """The answer for a job this gateway does not hold: one it ran before a restart, or another gateway's."""
        state = self._state
        stored = None if state is None else await asyncio.to_thread(state.job, request_id, time.time() - self.ttl)
        if stored is None:
            return _error(404, f"no image-to-video job {request_id!r} (unknown, or its result expired)")
        if stored.result is not None:
            return JSONResponse({"status": "complete", "result": dict(json.loads(stored.result))})
        if stored.running_until is not None and stored.running_until > time.time():
            return JSONResponse({"status": "processing"}, status_code=202)
        return JSONResponse({"status": "complete", "result": {"error": {"message": STOPPED}}})

    async def _run(self, request_id: str, work: Callable[[], Awaitable[Response]]) -> Response:
        if self._state is not None:
            await self._keep(self._state.job_started, request_id, time.time() + self.running_seconds)
        answer = await work()
        if self._state is not None:
            await self._keep(self._state.job_finished, request_id, json.dumps(_answer_result(answer)))
        return answer

    async def _keep(self, write: Callable[[str, Any], None], request_id: str, value: Any) -> None:
        """Write to the state; a failure is logged (the job is still answered here, from memory)."""
        try:
            await asyncio.to_thread(write, request_id, value)
        except Exception as exc:  # the database is away, the disk is full: keep serving from memory
            log_event(log, "async job not stored", logging.WARNING, request_id=request_id, error=str(exc))

    def close(self) -> None:
        """Cancel the jobs still running; other gateways (and this one, restarted) answer them with an error."""
        running = [request_id for request_id, entry in self._jobs.items() if not entry.task.done()]
        for entry in self._jobs.values():
            entry.task.cancel()
        if self._state is not None and running:
            stopped = json.dumps({"error": {"message": STOPPED}})
            for request_id in running:
                try:
                    self._state.job_finished(request_id, stopped)
                except Exception:
                    break  # the database is away: the jobs' deadlines end them instead
        self._state = None

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
