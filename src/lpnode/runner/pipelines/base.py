"""What a batch pipeline is: a route description plus a model that turns params into a response.

A pipeline module defines one :class:`BatchPipeline` subclass. Its ``route`` (a :class:`RouteSpec`)
is all the HTTP layer needs: the generic route builder reads the params model (JSON or form), the
response model and the error messages from it. The class body must import nothing heavy at module
level, so the route can be mounted (and the port opened) before the model loads.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from lpnode.errors import JobCancelledError
from lpnode.pipelines import PIPELINES

ParamsT = TypeVar("ParamsT", bound=BaseModel)


@dataclass(frozen=True)
class RouteSpec:
    """How a pipeline appears over HTTP (path, OpenAPI names, body, response, error wording)."""

    name: str  # the pipeline name, also the path: "text-to-image"
    operation_id: str  # "genTextToImage"
    sdk_name: str  # x-speakeasy-name-override, "textToImage"
    summary: str
    description: str
    params: type[BaseModel]
    response: type[BaseModel]
    multipart: bool  # False: JSON body `params`; True: form fields, `bytes` fields are file uploads
    default_error: str  # "Text-to-image pipeline error."
    oom_error: str  # "Out of memory error. Try reducing output image resolution."
    extra_error_codes: tuple[int, ...] = ()  # documented besides 400, 401, 422, 500 (e.g. 413, 415)
    model_id_field: str = "model_id"
    max_in_flight: int = 1  # default concurrency when the operator sets none
    auth_message: str = "Invalid bearer token."
    guard_period: bool = True  # upstream ends the model_id guard message with "." on most routes
    sdk_data_name: bool = True  # upstream names the 200 schema "data" for SDKs on most routes
    streaming: bool = False  # a request with `stream: true` is answered with server-sent events

    @property
    def path(self) -> str:
        return "/" + self.name


@dataclass(frozen=True)
class LoadContext:
    """What a pipeline needs to load its model."""

    model_id: str
    model_dir: Path
    device: str  # "cuda", "mps" or "cpu"
    optimization_flags: dict[str, str] = field(default_factory=dict)
    safety_checker_id: str = ""
    allow_downloads: bool = False
    max_in_flight: int = 1  # requests the runner admits at once (pipelines that run their own threads)
    upstream_url: str = ""  # llm: an OpenAI-compatible server to forward to (e.g. Ollama)
    upstream_model: str = ""  # llm: the upstream's name for the model (e.g. llama3.1:8b)
    upstream_api_key: str = ""

    def flag(self, name: str) -> bool:
        return self.optimization_flags.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class Job:
    """One request's run: lets the HTTP layer cancel it between model steps."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.steps_done = 0
        # Response headers the pipeline wants sent, e.g. the audio duration a caller bills by.
        self.headers: dict[str, str] = {}

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def checkpoint(self) -> None:
        """Called between steps; raises :class:`JobCancelledError` once the job is cancelled."""
        self.steps_done += 1
        if self._cancelled.is_set():
            raise JobCancelledError("client disconnected")


_SPEC_BY_PARAMS = {spec.params: spec for spec in PIPELINES.values() if spec.params is not None}
"""A network pipeline's request model -> its spec (custom pipelines have request models of their own)."""


class BatchPipeline(ABC, Generic[ParamsT]):
    """One loaded model serving one route. Instances are used from one worker thread at a time
    unless ``thread_safe`` is True."""

    route: ClassVar[RouteSpec]
    thread_safe: ClassVar[bool] = False

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.model_id = ctx.model_id

    def check(self, params: ParamsT) -> None:
        """Cheap validation run before the job is queued; raise BadRequestError to refuse it.

        A network pipeline's request gets the checks of its :class:`~lpnode.pipelines.PipelineSpec`, the
        ones a gateway runs too. Override to add checks that need the loaded model, and call this."""
        spec = _SPEC_BY_PARAMS.get(type(params))
        if spec is not None:
            spec.precheck(params, {})

    @abstractmethod
    def run(self, params: ParamsT, job: Job) -> BaseModel:
        """Serve one request. Runs in a worker thread, never on the event loop."""

    def health_warnings(self) -> list[str]:
        """What this loaded pipeline can do only in part, each with its fix, for ``/health``; empty when all is
        well. By default: the image safety checker held as ``self.safety`` (see :mod:`lpnode.runner.safety`)
        when it could not be loaded. Called on the event loop: must not block."""
        problem = getattr(getattr(self, "safety", None), "problem", "")
        return [problem] if isinstance(problem, str) and problem else []

    async def close(self) -> None:
        """Release what the pipeline holds besides memory (connections); called at shutdown."""


class StreamingPipeline(BatchPipeline[ParamsT]):
    """A pipeline that produces its answer piece by piece (llm). Its methods run on the event loop and
    must hand blocking work to threads themselves; closing the stream (client gone) stops the work."""

    def run(self, params: ParamsT, job: Job) -> BaseModel:
        raise NotImplementedError("streaming pipelines answer through complete() and stream()")

    @abstractmethod
    def stream(self, params: ParamsT, job: Job) -> AsyncGenerator[BaseModel, None]:
        """The answer as chunks; the last one carries the finish reason."""

    @abstractmethod
    async def complete(self, params: ParamsT, job: Job) -> BaseModel:
        """The whole answer at once."""


PipelineFactory = Callable[[LoadContext], BatchPipeline[Any]]
