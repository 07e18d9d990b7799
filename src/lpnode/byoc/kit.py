"""The BYOC kit: serve Python functions as a BYOC container a Livepeer orchestrator can register.

A container needs ``GET /health`` and job routes (docs/byoc.md). With the kit::

    from lpnode.byoc.kit import ByocApp

    def load():                      # runs once, in a thread, when the server starts
        return {"greeting": "hello"}

    app = ByocApp("echo", load=load)

    @app.job()                       # POST /echo, /v1/echo and / (the first job)
    def echo(inputs):                # inputs: the JSON body, or the form fields of a multipart body
        return {"echo": inputs, "greeting": app.loaded["greeting"]}

    if __name__ == "__main__":
        app.serve(port=9000)         # or: lpnode byoc serve app:app --port 9000

What the kit provides:

- ``GET /health``: 503 ``{"status": "LOADING"}`` until ``load`` has finished, then 200 ``{"status": "OK"}``;
  503 ``{"status": "ERROR", "error": ...}`` if ``load`` raised. Jobs get 503 (with ``Retry-After``) until
  then. ``load``'s return value is ``app.loaded``.
- Job routes, versioned: ``@app.job("name")`` serves ``POST /<version>/<name>`` (``version`` defaults to
  ``v1``) and ``POST /<name>``, the path a gateway or SDK call ``/process/request/<name>`` arrives on;
  the first job is also served at ``POST /``.
- Inputs: a multipart body is passed as a dict of its fields, files as :class:`UploadedFile`; any other
  body is read as JSON whatever its ``Content-Type`` (so ``curl -d '{...}'`` works); an empty body is
  ``{}``. A body that is not JSON is 400.
- Outputs: a ``dict``/``list``/number/string/``None`` is sent as JSON; ``bytes`` as
  ``application/octet-stream``; a Starlette ``Response`` as it is; a generator (sync or async) as
  server-sent events, each item a ``data: <JSON>`` event, ending with ``data: [DONE]``.
- Errors: ``ValueError`` from a job is the caller's mistake (400); any other exception is 500. Both
  answer ``{"error": {"message": ...}}``; no traceback reaches the caller (it goes to the log).
- Sync functions and generators run in worker threads, so ``/health`` answers during a job.
- ``token`` (or env ``BYOC_TOKEN``): job routes require ``Authorization: Bearer <token>`` (401 otherwise);
  register the container with the same ``token`` so the orchestrator sends it.
- ``serve()`` runs uvicorn; SIGTERM or Ctrl-C stops taking new connections and lets running jobs finish
  (up to ``graceful_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lpnode.errors import PayloadTooLargeError

log = logging.getLogger("lpnode.byoc.kit")
MAX_PART_BYTES = 100 * 1024 * 1024
MAX_BODY_BYTES = 100 * 1024 * 1024
"""A JSON body over this is refused with 413 as soon as it passes it."""
Handler = Callable[[Any], Any]


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


class ByocApp:
    """A BYOC container: ``/health``, job routes, optional load step and bearer token (module docstring)."""

    def __init__(
        self,
        name: str = "",
        *,
        load: Callable[[], Any] | None = None,
        token: str | None = None,
        version: str = "v1",
    ) -> None:
        self.name = name
        self.version = version.strip("/")
        self.token = os.environ.get("BYOC_TOKEN", "") if token is None else token
        self.loaded: Any = None
        self._load = load
        self._state = "LOADING"
        self._error = ""
        self._jobs: dict[str, Handler] = {}
        self._app: Starlette | None = None
        self._loader: threading.Thread | None = None

    # --- declaring jobs ---------------------------------------------------------------------------------

    def job(self, name: str = "") -> Callable[[Handler], Handler]:
        """Decorator: serve the function as job ``name`` (default: the app's name, else the function's)."""

        def register(fn: Handler) -> Handler:
            self.add_job(name or self.name or fn.__name__, fn)
            return fn

        return register

    def add_job(self, name: str, fn: Handler) -> None:
        clean = name.strip("/")
        if not clean or clean in self._jobs or clean == "health":
            raise ValueError(f"job name {name!r} is empty, taken, or reserved")
        self._jobs[clean] = fn
        self._app = None

    @property
    def jobs(self) -> list[str]:
        return list(self._jobs)

    @property
    def ready(self) -> bool:
        return self._state == "OK"

    # --- the ASGI app -----------------------------------------------------------------------------------

    def asgi(self) -> Starlette:
        """The Starlette app (built once; jobs added later rebuild it)."""
        if self._app is None:
            routes = [Route("/health", self._health, methods=["GET"])]
            for index, (name, fn) in enumerate(self._jobs.items()):
                endpoint = self._endpoint(fn)
                paths = [f"/{self.version}/{name}" if self.version else "", f"/{name}", "/" if index == 0 else ""]
                routes += [Route(p, endpoint, methods=["POST"]) for p in dict.fromkeys(paths) if p]
            self._app = Starlette(routes=routes, lifespan=self._lifespan)
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi()(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.start_loading()
        yield

    def start_loading(self) -> None:
        """Run ``load`` in a background thread (at once if there is none); /health turns 200 when it is done."""
        if self._state != "LOADING" or self._loader is not None:
            return
        if self._load is None:
            self._state = "OK"
            return

        def run() -> None:
            try:
                assert self._load is not None
                self.loaded = self._load()
                self._state = "OK"
                log.info("loaded; serving jobs")
            except Exception as exc:
                log.exception("load failed")
                self._error = f"{type(exc).__name__}: {exc}"
                self._state = "ERROR"

        self._loader = threading.Thread(target=run, name="byoc-load", daemon=True)
        self._loader.start()

    async def _health(self, request: Request) -> Response:
        body = {"status": self._state} | ({"error": self._error} if self._error else {})
        return JSONResponse(body, status_code=200 if self._state == "OK" else 503)

    def _endpoint(self, fn: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if self.token and not _bearer_ok(request.headers.get("authorization", ""), self.token):
                return _error("missing or wrong bearer token", 401)
            if self._state != "OK":
                message = "still loading" if self._state == "LOADING" else f"failed to load: {self._error}"
                return _error(message, 503, {"Retry-After": "2"})
            try:
                inputs = await _inputs(request)
                result = await _call(fn, inputs)
            except ValueError as exc:
                return _error(str(exc) or "bad input", 400)
            except PayloadTooLargeError as exc:
                return _error(exc.message, 413)
            except Exception as exc:
                log.exception("job failed")
                return _error(f"the job failed: {type(exc).__name__}", 500)
            return _response(result)

        return endpoint

    # --- running ----------------------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 9000, graceful_seconds: float = 30.0) -> None:
        """Blocking: serve until SIGTERM/SIGINT, letting running jobs finish (up to ``graceful_seconds``)."""
        import uvicorn

        from lpnode.logs import configure_logging
        from lpnode.uvicorn_config import uvicorn_config

        if not logging.getLogger().handlers:
            configure_logging("info")
        config = uvicorn_config(
            self.asgi(), host=host, port=port, log_config=None, access_log=False,
            timeout_graceful_shutdown=int(graceful_seconds), lifespan="on",
        )  # fmt: skip
        uvicorn.Server(config).run()


def _bearer_ok(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)


async def _inputs(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields: dict[str, Any] = {}
        async with request.form(max_part_size=MAX_PART_BYTES) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    fields[key] = UploadedFile(value.filename or key, value.content_type or "", data)
                else:
                    fields[key] = value
        return fields
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # not request.body(): a chunked upload is refused as it passes the limit
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None


async def _call(fn: Handler, inputs: Any) -> Any:
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        result = fn(inputs)
        return await result if inspect.isawaitable(result) else result
    return await run_in_threadpool(fn, inputs)


def _response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), media_type="application/octet-stream")
    if inspect.isasyncgen(result) or inspect.isgenerator(result):
        return StreamingResponse(_events(result), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return JSONResponse(result)


async def _events(items: Any) -> AsyncIterator[bytes]:
    source: AsyncIterator[Any] = items if inspect.isasyncgen(items) else iterate_in_threadpool(_iter(items))
    try:
        async for item in source:
            yield f"data: {json.dumps(item)}\n\n".encode()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stream is already 200: say so in an event, then end it
        log.exception("job stream failed")
        yield f"event: error\ndata: {json.dumps({'message': type(exc).__name__})}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _iter(items: Iterator[Any]) -> Iterator[Any]:
    yield from items
