"""``POST /aiResults``: where remote AI workers deliver job results, and the table of jobs awaiting them.

A job sent to a worker gets a task id (:class:`TaskTable`) and a future its caller waits on. The worker's
upload is checked before anything of it is used: ``Authorization: Livepeer-AI-Worker-1.0`` and
``Credentials: <orchestrator secret>`` (401 otherwise; go-livepeer answers 401 for a bad secret but goes on
processing the upload, which is fixed here), a known ``TaskId`` (400 / 404) whose ``Pipeline`` matches.
Then the body settles the task:

- ``livepeer/ai-worker-error``: :class:`ErrorOutcome` (status from ``Lpnode-Status``, else 500);
- ``multipart/mixed``: :class:`AnswerOutcome` (the JSON answer and its files);
- ``text/event-stream``: :class:`StreamOutcome`; the upload stays open while the caller reads the stream,
  and the reply ``OK`` is sent once the caller is done (or gone).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from lpnode.logs import log_event
from lpnode.protocol.ai_worker import (
    CREDENTIALS_HEADER,
    ERROR_CONTENT_TYPE,
    PIPELINE_HEADER,
    STATUS_HEADER,
    STREAM_CONTENT_TYPE,
    TASK_ID_HEADER,
    WorkerResult,
    parse_result,
)
from lpnode.protocol.job_hop import WORKER_AUTHORIZATION

log = logging.getLogger("lpnode.orchestrator.workers")
MAX_RESULT_BYTES = 512 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True)
class AnswerOutcome:
    result: WorkerResult


@dataclass(frozen=True)
class ErrorOutcome:
    message: str
    status: int = 500


@dataclass
class StreamOutcome:
    """An LLM stream from a worker. The caller reads ``chunks`` and sets ``finished`` when it is done."""

    chunks: AsyncIterator[bytes]
    finished: asyncio.Event = field(default_factory=asyncio.Event)


Outcome = AnswerOutcome | ErrorOutcome | StreamOutcome


@dataclass
class PendingTask:
    task_id: int
    worker_id: str
    pipeline: str
    outcome: asyncio.Future[Outcome]


class TaskTable:
    """Jobs sent to workers and not answered yet, by task id (counting up from 1, as go-livepeer does)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, PendingTask] = {}

    def add(self, worker_id: str, pipeline: str) -> PendingTask:
        task = PendingTask(next(self._ids), worker_id, pipeline, asyncio.get_running_loop().create_future())
        self._pending[task.task_id] = task
        return task

    def get(self, task_id: int) -> PendingTask | None:
        return self._pending.get(task_id)

    def remove(self, task: PendingTask) -> None:
        self._pending.pop(task.task_id, None)


class ResultsRoute:
    """The ``/aiResults`` handler. ``secret`` empty: every upload is refused (no workers are taken)."""

    def __init__(self, secret: str, tasks: TaskTable, stream_timeout: float) -> None:
        self._secret = secret.encode()
        self._tasks = tasks
        self._stream_timeout = stream_timeout

    async def handle(self, request: Request) -> Response:
        if request.headers.get("authorization", "") != WORKER_AUTHORIZATION:
            return _text(f"Authorization must be {WORKER_AUTHORIZATION}", 401)
        given = request.headers.get(CREDENTIALS_HEADER, "").encode()
        if not self._secret or not hmac.compare_digest(given, self._secret):
            log_event(log, "result upload with a wrong secret refused", logging.WARNING, client=_client(request))
            return _text("invalid credentials", 401)
        try:
            task_id = int(request.headers.get(TASK_ID_HEADER, ""))
        except ValueError:
            return _text(f"missing or invalid {TASK_ID_HEADER} header", 400)
        task = self._tasks.get(task_id)
        if task is None or task.outcome.done():
            return _text(f"task {task_id} is not waiting for a result (it may have timed out)", 404)
        pipeline = request.headers.get(PIPELINE_HEADER, "")
        if pipeline and pipeline != task.pipeline:
            return _text(f"task {task_id} is a {task.pipeline} job, not {pipeline}", 400)
        content_type = request.headers.get("content-type", "")
        mime = content_type.split(";")[0].strip().lower()
        try:
            if mime == STREAM_CONTENT_TYPE:
                return await self._stream(request, task)
            if mime == ERROR_CONTENT_TYPE:
                message = (await _read(request, MAX_ERROR_BYTES)).decode("utf-8", "replace").strip()
                _settle(task, ErrorOutcome(message or "the worker reported an error", _status(request)))
            elif mime == "multipart/mixed":
                body = await _read(request, MAX_RESULT_BYTES)
                try:
                    result = parse_result(content_type, body)
                except ValueError as exc:
                    _settle(task, ErrorOutcome(f"the worker sent an unreadable result: {exc}"))
                    return _text(str(exc), 400)
                _settle(task, AnswerOutcome(result))
            else:
                return _text(f"unsupported Content-Type {mime or 'none'}", 415)
        except _TooLarge as exc:
            _settle(task, ErrorOutcome(str(exc)))
            return _text(str(exc), 413)
        except ClientDisconnect:
            return Response(status_code=499)
        return _text("OK", 200)

    async def _stream(self, request: Request, task: PendingTask) -> Response:
        outcome = StreamOutcome(request.stream())
        _settle(task, outcome)
        try:
            await asyncio.wait_for(outcome.finished.wait(), self._stream_timeout)
        except TimeoutError:
            return _text("the stream was not read in time", 504)
        return _text("OK", 200)


class _TooLarge(Exception):
    pass


def _settle(task: PendingTask, outcome: Outcome) -> None:
    if not task.outcome.done():
        task.outcome.set_result(outcome)


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"the result is over {limit // (1024 * 1024) or 1} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _status(request: Request) -> int:
    """The HTTP status an lpnode worker says the error deserves; 500 when absent or not an error status."""
    try:
        status = int(request.headers.get(STATUS_HEADER, "500"))
    except ValueError:
        return 500
    return status if 400 <= status <= 599 else 500


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else ""


def _text(message: str, status: int) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)
