"""The runner's ASGI app: one pipeline route plus health, hardware, version, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lpnode import __version__
from lpnode.logs import log_event
from lpnode.runner import hardware
from lpnode.runner.config import UPLOAD_LIMIT_BYTES, RunnerConfig
from lpnode.runner.middleware import BodyLimitMiddleware, MetricsMiddleware, install_error_handlers
from lpnode.runner.pipelines import ServedPipeline, pipeline_class, pipeline_names, served_pipeline
from lpnode.runner.routes import add_pipeline_route
from lpnode.runner.service import RunnerService
from lpnode.schemas import HardwareInformation, HardwareStats, HealthCheck, Version

TITLE = "lpnode runner"
DESCRIPTION = (
    "Serves one AI pipeline and model over the Livepeer ai-runner HTTP API "
    "(drop-in for a livepeer/ai-runner container)."
)
log = logging.getLogger("lpnode.runner")
# Multipart overhead allowed on top of the 50 MiB per-file limit before the body is refused outright.
BODY_LIMIT_BYTES = UPLOAD_LIMIT_BYTES + 1024 * 1024


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def _get(app: FastAPI, path: str, **kwargs: Any) -> Callable[[_Endpoint], _Endpoint]:
    """Register a GET route and its trailing-slash twin (kept out of the OpenAPI document)."""

    def register(func: _Endpoint) -> _Endpoint:
        app.get(path, **kwargs)(func)
        app.get(path + "/", include_in_schema=False, **{k: v for k, v in kwargs.items() if k == "response_model"})(func)
        return func

    return register


def add_system_routes(app: FastAPI, service: RunnerService | None, pipeline: str, model_id: str, version: str) -> None:
    @_get(app, "/health", response_model=HealthCheck, operation_id="health", summary="Health")
    async def health() -> HealthCheck:
        if service is None:
            return HealthCheck(status="ERROR")
        return HealthCheck(status=service.health(), warnings=service.health_warnings())  # type: ignore[arg-type]

    @_get(
        app, "/hardware/info", response_model=HardwareInformation, operation_id="hardware_info", summary="Hardware Info"
    )
    async def hardware_info() -> HardwareInformation:
        gpus = await asyncio.to_thread(hardware.gpu_info)
        return HardwareInformation(pipeline=pipeline, model_id=model_id, gpu_info=gpus)

    @_get(app, "/hardware/stats", response_model=HardwareStats, operation_id="hardware_stats", summary="Hardware Stats")
    async def hardware_stats() -> HardwareStats:
        gpus = await asyncio.to_thread(hardware.gpu_stats)
        return HardwareStats(pipeline=pipeline, model_id=model_id, gpu_stats=gpus)

    @_get(app, "/version", response_model=Version, operation_id="version", summary="Version")
    async def version_info() -> Version:
        return Version(pipeline=pipeline, model_id=model_id, version=version)

    if service is not None:
        registry = service.metrics.registry

        @_get(app, "/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def resolve_pipeline(config: RunnerConfig) -> tuple[RunnerConfig, ServedPipeline]:
    """The pipeline ``config`` names (built-in, installed, or ``pipeline_class``), and the config with its
    route name and model id filled in: a custom pipeline without a model id reports its own name."""
    served = served_pipeline(config.pipeline, config.pipeline_class)
    resolved = dataclasses.replace(config, pipeline=served.name, model_id=config.model_id or served.name)
    return resolved, served


def create_app(config: RunnerConfig, *, load: bool = True, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The runner app for ``config``. The model starts loading when the app starts (``load``), so the
    port is open and ``/health`` says LOADING meanwhile."""
    config, served = resolve_pipeline(config)
    for note in served.notes:
        log_event(log, note, logging.WARNING, pipeline=served.name)
    if not served.builtin:
        log_event(log, "serving a custom pipeline", pipeline=served.name, cls=_qualified(served.cls))
    cls = served.cls
    service = RunnerService(config, cls, on_ready=on_ready, route=served.route)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if load:
            service.start_loading()
        yield
        await service.shutdown()

    # No /docs or /redoc: those pages load their scripts from a CDN, and a runner may be offline.
    app = FastAPI(
        title=TITLE, description=DESCRIPTION, version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.service = service
    install_error_handlers(app)
    add_pipeline_route(app, served.route, service, config.auth_token)
    add_system_routes(app, service, config.pipeline, config.model_id, config.version)
    app.add_middleware(BodyLimitMiddleware, limit=BODY_LIMIT_BYTES)
    known = {served.route.path, "/health", "/hardware/info", "/hardware/stats", "/version", "/metrics"}
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, routes=known)
    _use_runner_openapi(app)
    return app


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def openapi_document() -> dict[str, Any]:
    """The runner API with every built-in pipeline's route: what ``docs/openapi/runner.json`` holds."""
    app = FastAPI(title=TITLE, description=DESCRIPTION, version=__version__)
    for name in pipeline_names():
        add_pipeline_route(app, pipeline_class(name).route, None, "")
    add_system_routes(app, None, "", "", "")
    _use_runner_openapi(app)
    return app.openapi()


def _use_runner_openapi(app: FastAPI) -> None:
    base = app.openapi

    def runner_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _upstream_conventions(base())
        return app.openapi_schema

    app.openapi = runner_openapi  # type: ignore[method-assign]


def _upstream_conventions(doc: dict[str, Any]) -> dict[str, Any]:
    """Shape the generated document like the upstream one: file fields as ``format: binary`` (what
    OpenAPI 3.0 code generators read), optional references as plain ``$ref``s, no ``default: null``,
    and the 200 schema named ``data``."""
    for schema in doc.get("components", {}).get("schemas", {}).values():
        for prop in schema.get("properties", {}).values():
            options = prop.get("anyOf", [])
            if len(options) == 2 and {"type": "null"} in options and any("$ref" in o for o in options):
                del prop["anyOf"]
                prop["$ref"] = next(o["$ref"] for o in options if "$ref" in o)
            if prop.get("contentMediaType") == "application/octet-stream":
                del prop["contentMediaType"]
                prop["format"] = "binary"
            if "default" in prop and prop["default"] is None:
                del prop["default"]
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if not operation.pop("x-lpnode-data-name", False):
                continue
            content = operation["responses"]["200"]["content"]["application/json"]
            content["schema"]["x-speakeasy-name-override"] = "data"
    return doc
