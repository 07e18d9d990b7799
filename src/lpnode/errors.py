"""Every error lpnode raises on purpose, what each means to a caller, and how each wire dialect writes it.

    LpnodeError                          anything lpnode raises on purpose
    ├── ConfigError                      the operator's flags, env or files are unusable (exit, one clear line)
    │   └── MissingExtraError            the command needs a pip extra that is not installed (names it)
    ├── SupervisedProcessError           a process `lpnode up` keeps running failed again and again; it stopped
    ├── ModelStoreError                  models dir problems
    │   ├── ModelNotFoundError           a model is not in the models dir
    │   └── HubUnreachableError          the Hugging Face Hub cannot be reached for a pull
    └── JobError                         one request cannot be served; ``status_code``, ``headers``, ``retry_after``
        ├── BadRequestError              400: the request cannot be served as given
        │   ├── LoraLoadingError         400: a LoRA in ``loras`` is malformed, missing or incompatible
        │   ├── UnknownModelError        400: no aiModels.json entry serves this pipeline and model
        │   └── ChatRequestError         400: an OpenAI chat request the llm pipeline cannot run (names ``param``)
        ├── UnauthorizedError            401: no usable API key, or no admin token (``WWW-Authenticate``)
        ├── PaymentRequiredError         402: the ``Livepeer-Payment`` header is unusable
        ├── ForbiddenError               403: the session's credentials are missing, forged, expired or incompatible;
        │                                     an admin request from a foreign Host or another site
        ├── NotFoundError                404: no such route, stream, session or result
        ├── MethodNotAllowedError        405: the route does not take this method
        ├── RequestTimeoutError          408: the request head or body arrived too slowly (connection closed)
        ├── ConflictError                409: the thing exists already, or is in a state that refuses this
        ├── PayloadTooLargeError         413: an upload or an answer is over its size limit
        ├── UnsupportedMediaError        415: an upload's format cannot be decoded
        ├── ValidationFailedError        422: fields fail the pipeline's schema (FastAPI's ``detail`` list)
        ├── TooManyRequestsError         429: an API key is over a limit (``Retry-After``; names the key)
        ├── RequestHeaderFieldsTooLargeError  431: the request head is over its size or header count
        ├── PipelineFailedError          500: the model or an upstream failed for a reason that is not the caller's
        │   └── OutOfMemoryError         500: the device ran out of memory
        ├── NotInstalledError            501: the route needs a pip extra this node lacks (names it)
        ├── UnavailableError             503: loading, failed to load, at capacity (``Retry-After``)
        │   ├── InsufficientCapacity     503 ``insufficient capacity``: every runner for the model is busy
        │   ├── RunnerUnavailableError   503: the runner could not be made ready in time, or is unhealthy
        │   └── PoolClosedError          503: the runner pool is shutting down
        ├── GatewayTimeoutError          504: the deadline passed before an answer
        └── JobCancelledError            499: the caller went away; nothing is sent

Protocol libraries keep their own trees below ``LpnodeError`` (``lpnode.trickle.errors``,
``lpnode.protocol.grpc_wire.GrpcError``, ``lpnode.live.media.MediaError``) and map to these where they meet a job.
Library exceptions (torch, diffusers, PIL, aiohttp, grpc) are mapped at the module that calls the library; none
crosses a module boundary unmapped.

A job error is written in one of three dialects, one function each (the gateway's OpenAI routes add OpenAI's
own, in :mod:`lpnode.gateway.openai_compat`):

- :func:`go_text_response`: go-livepeer's ``http.Error`` (plain text and a newline), the orchestrator's;
- :func:`runner_json_response`: ai-runner's ``{"detail": {"msg": m}}``, the runner's;
- :func:`gateway_json_response`: ``{"error": {"message": m}, "detail": {"msg": m}}``, which both the ``livepeer-ai``
  SDK and go-livepeer clients read, the gateway's (422 keeps FastAPI's ``detail`` list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from starlette.responses import Response

CANCELLED_STATUS = 499


class LpnodeError(Exception):
    """Base of every error lpnode raises on purpose."""


class ConfigError(LpnodeError):
    """The configuration given by the operator cannot be used."""


class MissingExtraError(ConfigError):
    """A command, flag or feature needs an optional part of lpnode (a pip extra) that is not installed. ``str()``
    is one line naming what needs it and the ``pip install`` that adds it; ``extra`` is the extra's name."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class SupervisedProcessError(LpnodeError):
    """A child process ``lpnode up`` supervises exited too often in a row; everything was stopped. ``str()``
    says which process and its last exit."""


class ModelStoreError(LpnodeError):
    """A problem with the models directory or fetching into it."""


class ModelNotFoundError(ModelStoreError):
    """A model is not present in the models directory."""


class HubUnreachableError(ModelStoreError):
    """The Hugging Face Hub could not be reached."""


class JobError(LpnodeError):
    """A request that cannot be served. ``message`` is safe to show to the caller; ``headers`` go with the
    answer (``Retry-After`` whenever ``retry_after`` is set)."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = None if retry_after is None else max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class BadRequestError(JobError):
    status_code = 400


class LoraLoadingError(BadRequestError):
    """A LoRA named in ``loras`` cannot be used."""


class UnknownModelError(BadRequestError):
    """No aiModels.json entry serves this pipeline and model."""


class ChatRequestError(BadRequestError):
    """An OpenAI chat request the ``llm`` pipeline cannot run; ``param`` names the offending field, as OpenAI's
    errors do."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnauthorizedError(JobError):
    """401: the request has no usable API key. ``message`` says how to send one."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="lpnode"'}


class PaymentRequiredError(JobError):
    status_code = 402


class ForbiddenError(JobError):
    status_code = 403


class NotFoundError(JobError):
    status_code = 404


class MethodNotAllowedError(JobError):
    status_code = 405


class RequestTimeoutError(JobError):
    """408: the client took too long to send its request (see :mod:`lpnode.http_limits`)."""

    status_code = 408


class ConflictError(JobError):
    status_code = 409


class PayloadTooLargeError(JobError):
    status_code = 413


class UnsupportedMediaError(JobError):
    status_code = 415


class RequestHeaderFieldsTooLargeError(JobError):
    """431: the request's headers are over the server's size or count limit (see :mod:`lpnode.http_limits`)."""

    status_code = 431


class ValidationFailedError(JobError):
    """422: ``errors`` is FastAPI's list of ``{"loc", "msg", "type"}``; ``message`` joins them in one line."""

    status_code = 422

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors))
        self.errors = [dict(e) for e in errors]


class TooManyRequestsError(JobError):
    """429: an API key is over one of its limits; names the key (``key_id``, ``key_name``) for metering."""

    status_code = 429

    def __init__(self, message: str, retry_after: int = 1, *, key_id: int | None = None, key_name: str = "") -> None:
        super().__init__(message, retry_after=retry_after)
        self.key_id = key_id
        self.key_name = key_name


class NotInstalledError(JobError):
    """501: the route needs a pip extra this node does not have; ``message`` names the ``pip install``."""

    status_code = 501


class PipelineFailedError(JobError):
    status_code = 500


class OutOfMemoryError(PipelineFailedError):
    """The device ran out of memory."""


class UnavailableError(JobError):
    """503: not now; always carries ``Retry-After`` (default 1 s)."""

    status_code = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class InsufficientCapacity(UnavailableError):
    """No capacity now; ``message`` is exactly ``insufficient capacity`` (what go-livepeer answers), ``reason``
    says why, for logs and operators."""

    def __init__(self, reason: str) -> None:
        super().__init__("insufficient capacity", retry_after=1)
        self.reason = reason

    def __str__(self) -> str:
        return f"insufficient capacity: {self.reason}"


class RunnerUnavailableError(UnavailableError):
    """The runner for a lease could not be made ready in time, or an external runner is unhealthy."""


class PoolClosedError(UnavailableError):
    """The runner pool is closing or closed; no new leases."""


class GatewayTimeoutError(JobError):
    status_code = 504


class JobCancelledError(JobError):
    """The client disconnected; the job stopped. Never rendered to anyone."""

    status_code = CANCELLED_STATUS


_BY_STATUS: Mapping[int, type[JobError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    402: PaymentRequiredError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaError,
    422: BadRequestError,
    429: TooManyRequestsError,
    503: UnavailableError,
    504: GatewayTimeoutError,
}


def error_for_status(status: int, message: str, retry_after: int | None = None) -> JobError:
    """The error a peer's ``status`` answer stands for (a 422 from a peer is a plain 400 here: its list is the
    peer's, not ours); any other status is a :class:`PipelineFailedError`."""
    cls = _BY_STATUS.get(status, PipelineFailedError)
    if issubclass(cls, (UnavailableError, TooManyRequestsError)):
        return cls(message, retry_after or 1)
    return cls(message, retry_after=retry_after)


def go_text_response(exc: JobError) -> Response:
    from starlette.responses import PlainTextResponse, Response  # here: a command's errors need no web server

    """go-livepeer's dialect: the message as plain text, as ``http.Error`` writes it."""
    if isinstance(exc, JobCancelledError):
        return Response(status_code=CANCELLED_STATUS)
    return PlainTextResponse(exc.message + "\n", status_code=exc.status_code, headers=exc.headers or None)


def runner_json_response(exc: JobError) -> Response:
    from starlette.responses import JSONResponse, Response

    """ai-runner's dialect: ``{"detail": {"msg": m}}``."""
    if isinstance(exc, JobCancelledError):
        return Response(status_code=CANCELLED_STATUS)
    return JSONResponse({"detail": {"msg": exc.message}}, status_code=exc.status_code, headers=exc.headers or None)


def gateway_json_response(exc: JobError) -> Response:
    from starlette.responses import JSONResponse, Response

    """The gateway's dialect, read by both SDK families; a 422 keeps FastAPI's ``detail`` list."""
    if isinstance(exc, JobCancelledError):
        return Response(status_code=CANCELLED_STATUS)
    body: dict[str, Any]
    if isinstance(exc, ValidationFailedError):
        body = {"detail": exc.errors, "error": {"message": exc.message}}
    else:
        body = {"error": {"message": exc.message}, "detail": {"msg": exc.message}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers or None)
