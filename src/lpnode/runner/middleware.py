"""The runner's HTTP edges: error rendering, the request body size cap and request metrics.

Every error a client sees is JSON ``{"detail": {"msg": ...}}`` (422 keeps FastAPI's list shape);
nothing renders a traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lpnode.errors import JobError, PayloadTooLargeError, PipelineFailedError, runner_json_response
from lpnode.runner.metrics import RunnerMetrics

log = logging.getLogger("lpnode.runner")


def install_error_handlers(app: FastAPI) -> None:
    async def job_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, JobError)
        return runner_json_response(exc)

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return runner_json_response(PipelineFailedError("Internal server error."))

    app.add_exception_handler(JobError, job_error)
    app.add_exception_handler(Exception, unexpected)


class BodyTooLarge(HTTPException):
    """Raised from inside body reading so FastAPI passes it through instead of calling it a parse error."""

    def __init__(self) -> None:
        super().__init__(413, detail={"msg": "File size exceeds limit."})


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with 413: at once when Content-Length says so,
    otherwise as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await runner_json_response(PayloadTooLargeError("File size exceeds limit."))(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class MetricsMiddleware:
    """Count requests and time them by route; unknown paths share one label."""

    def __init__(self, app: ASGIApp, metrics: RunnerMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        route = path if path in self.routes else "other"
        status: dict[str, Any] = {"code": 500}
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
            self.metrics.request_seconds.labels(route=route).observe(time.perf_counter() - started)
