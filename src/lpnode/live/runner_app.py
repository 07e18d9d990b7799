"""The live runner's HTTP API: ai-runner's ``live-video-to-video`` contract.

``lpnode runner --pipeline live-video-to-video --model-id noop`` (or env ``PIPELINE``/``MODEL_ID``) serves:

- ``POST /live-video-to-video`` (and with a trailing slash), JSON ``LiveVideoToVideoParams``:
  ``subscribe_url``, ``publish_url`` (required), ``control_url``, ``events_url``, ``model_id``,
  ``params``, ``gateway_request_id``, ``manifest_id``, ``stream_id``. Checks, in order: the body (422),
  ``Authorization: Bearer AUTH_TOKEN`` when set (401), the model id (400 ``pipeline configured with X but
  called with Y.``), the params (400); 503 while the pipeline loads. A running stream is stopped first.
  200 ``LiveVideoToVideoResponse`` with empty URLs (the runner connects to the given ones itself).
- ``GET /health`` ``{"status": LOADING|IDLE|OK|ERROR}``, ``/version``, ``/hardware/info``,
  ``/hardware/stats``, ``/metrics``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from lpnode import __version__
from lpnode.errors import BadRequestError
from lpnode.live.media import max_framerate
from lpnode.live.pipeline import PipelineSpec
from lpnode.live.registry import resolve_spec
from lpnode.live.service import LiveService
from lpnode.live.streamer import StreamRequest
from lpnode.runner import hardware
from lpnode.runner.config import RunnerConfig, config_from_env
from lpnode.runner.metrics import RunnerMetrics
from lpnode.runner.middleware import MetricsMiddleware, install_error_handlers
from lpnode.runner.routes import auth_dependency
from lpnode.schemas import HardwareInformation, HardwareStats, HealthCheck, HTTPError, Version

LIVE_PIPELINE = "live-video-to-video"
PATH = "/" + LIVE_PIPELINE
TITLE = "lpnode live runner"


class LiveVideoToVideoParams(BaseModel):
    subscribe_url: str = Field(..., description="Source URL of the incoming stream to subscribe to.")
    publish_url: str = Field(..., description="Destination URL of the outgoing stream to publish.")
    control_url: str = Field(default="", description="Trickle URL of params updates.")
    events_url: str = Field(default="", description="Trickle URL to publish pipeline status and logs to.")
    model_id: str = Field(default="", description="Name of the live pipeline to run.")
    params: dict[str, Any] = Field(default_factory=dict, description="Initial parameters for the pipeline.")
    gateway_request_id: str = Field(default="", description="The ID of the gateway request (for logging).")
    manifest_id: str = Field(default="", description="The manifest ID from the orchestrator (for logging).")
    stream_id: str = Field(default="", description="The stream ID (for logging).")


class LiveVideoToVideoResponse(BaseModel):
    subscribe_url: str = Field(..., description="Source URL of the incoming stream to subscribe to")
    publish_url: str = Field(..., description="Destination URL of the outgoing stream to publish to")
    control_url: str = Field(default="", description="URL for updating the live video-to-video generation")
    events_url: str = Field(default="", description="URL for subscribing to events for pipeline status and logs")
    request_id: str = Field(default="", description="The ID generated for this request")
    manifest_id: str = Field(default="", description="Orchestrator manifest ID for this request")


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def live_config(config: RunnerConfig) -> tuple[RunnerConfig, PipelineSpec]:
    """The live pipeline ``config`` names (MODEL_ID or ``--pipeline-class``), with the model id filled in."""
    spec = resolve_spec(config.model_id, config.pipeline_class)
    max_framerate()  # a bad LPNODE_LIVE_MAX_FPS is one clear line at start, not a failure per stream
    return dataclasses.replace(config, pipeline=LIVE_PIPELINE, model_id=spec.name), spec


def create_live_app(config: RunnerConfig, spec: PipelineSpec, log_level: str = "info") -> FastAPI:
    """The live runner app; the pipeline process starts with the app (``/health`` says LOADING meanwhile)."""
    os.environ["MODEL_DIR"] = str(config.model_dir)  # read by pipelines in the pipeline process
    if config.threads:
        os.environ["TORCH_THREADS"] = str(config.threads)
    if config.device:
        os.environ["RUNNER_DEVICE"] = config.device
    service = LiveService(spec, log_level)
    metrics = RunnerMetrics(LIVE_PIPELINE, spec.name, config.version)
    metrics.set_state("LOADING")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.shutdown()

    app = FastAPI(title=TITLE, version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    install_error_handlers(app)

    def get(path: str, **kwargs: Any) -> Callable[[_Endpoint], _Endpoint]:
        def register(func: _Endpoint) -> _Endpoint:
            app.get(path, **kwargs)(func)
            app.get(path + "/", include_in_schema=False)(func)
            return func

        return register

    auth = Depends(auth_dependency(config.auth_token))
    errors: dict[int | str, dict[str, Any]] = {code: {"model": HTTPError} for code in (400, 401, 500, 503)}

    async def start(params: LiveVideoToVideoParams) -> LiveVideoToVideoResponse:
        if params.model_id and params.model_id != spec.name:
            raise BadRequestError(f"pipeline configured with {spec.name} but called with {params.model_id}.")
        request = StreamRequest(
            subscribe_url=params.subscribe_url,
            publish_url=params.publish_url,
            control_url=params.control_url,
            events_url=params.events_url,
            request_id=params.gateway_request_id,
            manifest_id=params.manifest_id,
            stream_id=params.stream_id,
        )
        await service.start_stream(request, params.params)
        return LiveVideoToVideoResponse(subscribe_url="", publish_url="", control_url="", events_url="")

    for path, in_schema in ((PATH, True), (PATH + "/", False)):
        app.post(
            path,
            response_model=LiveVideoToVideoResponse,
            responses=errors,
            dependencies=[auth],
            operation_id="genLiveVideoToVideo",
            summary="Live Video To Video",
            tags=["generate"],
            include_in_schema=in_schema,
        )(start)

    @get("/health", response_model=HealthCheck)
    async def health() -> HealthCheck:
        status = service.health()
        metrics.set_state(status)
        return HealthCheck(status=status)  # type: ignore[arg-type]

    @get("/version", response_model=Version)
    async def version() -> Version:
        return Version(pipeline=LIVE_PIPELINE, model_id=spec.name, version=config.version)

    @get("/hardware/info", response_model=HardwareInformation)
    async def hardware_info() -> HardwareInformation:
        gpus = await asyncio.to_thread(hardware.gpu_info)
        return HardwareInformation(pipeline=LIVE_PIPELINE, model_id=spec.name, gpu_info=gpus)

    @get("/hardware/stats", response_model=HardwareStats)
    async def hardware_stats() -> HardwareStats:
        gpus = await asyncio.to_thread(hardware.gpu_stats)
        return HardwareStats(pipeline=LIVE_PIPELINE, model_id=spec.name, gpu_stats=gpus)

    @get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        metrics.set_state(service.health())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    known = {PATH, "/health", "/hardware/info", "/hardware/stats", "/version", "/metrics"}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=known)
    return app


def serve_live(config: RunnerConfig, log_level: str = "", spec: PipelineSpec | None = None) -> None:
    """Serve the live runner until SIGINT/SIGTERM (the port is bound before the pipeline loads)."""
    from lpnode.runner.server import run_app

    if spec is None:
        config, spec = live_config(config)
    level = log_level or logging.getLevelName(logging.getLogger().level).lower()
    run_app(config, lambda: create_live_app(config, spec, level))


def serve_spec(spec: PipelineSpec, host: str | None = None, port: int | None = None) -> None:
    """:func:`lpnode.live.pipeline.start_app`: serve ``spec`` with the runner's env contract (``HOST`` and
    ``PORT`` default to 0.0.0.0:8000 as in ai-runner), or prepare its models with ``PREPARE_MODELS=1``."""
    from lpnode.live.pipeline import Pipeline
    from lpnode.logs import configure_logging
    from lpnode.runner.pipelines.loader import load_pipeline_class

    level = os.environ.get("LOG_LEVEL", "info")
    configure_logging(level)
    if os.environ.get("PREPARE_MODELS", "") == "1" or "--prepare-models" in sys.argv:
        load_pipeline_class(spec.pipeline_cls, Pipeline).prepare_models()
        return
    env = dict(os.environ)
    env.setdefault("HOST", "0.0.0.0")
    env.update(PIPELINE=LIVE_PIPELINE, MODEL_ID=spec.name)
    config = config_from_env(env, host=host, port=port)
    serve_live(config, level, spec=spec)
