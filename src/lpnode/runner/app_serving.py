"""Serve a runner as a Live Runner app: ``lpnode runner ... --live-runner-orch URL --orch-secret S``.

The runner serves exactly what it serves without the flag, and registers itself with the orchestrator by
heartbeat (:mod:`lpnode.runner.app_registration`) while it runs:

- a batch pipeline or a custom pipeline class is a **single-shot** app: its ``runner_url`` is the runner itself,
  so ``POST {orch}/apps/{runner_id}/app/<pipeline>`` reaches the ai-runner route ``POST /<pipeline>`` with the
  same body and answer. Capacity defaults to the runner's own concurrency (``--max-in-flight``).
- a live pipeline (``--pipeline live-video-to-video``) is a **persistent** app of capacity 1, whose sessions
  stream over trickle channels the orchestrator holds (:mod:`lpnode.live.app_sessions`).

The app name defaults to ``<pipeline>/<model_id>``; version, GPU and price come from the runner's flags; the
heartbeat's status follows ``/health`` (LOADING → ``loading``, IDLE/OK → ``ready``, ERROR → ``error``), so the
app is offered only while the runner can serve. A clean stop (SIGTERM/SIGINT) unregisters before the model is
unloaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from lpnode.errors import ConfigError
from lpnode.live.runner_app import LIVE_PIPELINE
from lpnode.protocol.runner_apps import MODE_PERSISTENT, MODE_SINGLE_SHOT, pipeline_app_metadata
from lpnode.runner import hardware
from lpnode.runner.app_advert import app_status, gpu_advert, parse_app_price, runner_url
from lpnode.runner.app_registration import AppAdvert, AppRegistration, OrchestratorLink
from lpnode.runner.config import RunnerConfig


def serve_as_app(config: RunnerConfig) -> None:
    """Serve the runner ``config`` names and keep it registered with ``config.app_orchestrator`` until
    SIGINT/SIGTERM. ConfigError before anything starts when the settings do not fit the pipeline."""
    from lpnode.runner.server import run_app

    run_app(config, app_factory(config))


def app_factory(config: RunnerConfig) -> Callable[[], FastAPI]:
    """A function building the runner's app with its registration attached (checks run now, not in it)."""
    link = OrchestratorLink(config.app_orchestrator, config.app_orch_secret)
    if config.pipeline == LIVE_PIPELINE:
        return _live_factory(config, link)
    return _batch_factory(config, link)


def _batch_factory(config: RunnerConfig, link: OrchestratorLink) -> Callable[[], FastAPI]:
    from lpnode.runner.app import resolve_pipeline

    config, served = resolve_pipeline(config)
    capacity = config.app_capacity or config.max_in_flight or served.route.max_in_flight

    def make() -> FastAPI:
        from lpnode.runner.app import create_app

        app = create_app(config)
        service = app.state.service
        advert = _advert(config, MODE_SINGLE_SHOT, capacity, served.route.path)
        attach(app, AppRegistration(link, advert, status=lambda: app_status(service.health())))
        return app

    return make


def _live_factory(config: RunnerConfig, link: OrchestratorLink) -> Callable[[], FastAPI]:
    import logging

    from lpnode.live.app_sessions import STREAM_START, add_session_routes
    from lpnode.live.runner_app import create_live_app, live_config

    config, spec = live_config(config)
    if config.app_capacity > 1:
        raise ConfigError(
            f"a live pipeline serves one stream at a time: --app-capacity must be 1, got {config.app_capacity}"
        )
    level = logging.getLevelName(logging.getLogger().level).lower()

    def make() -> FastAPI:
        app = create_live_app(config, spec, level)
        service = app.state.service
        advert = _advert(config, MODE_PERSISTENT, 1, STREAM_START)
        registration = AppRegistration(link, advert, status=lambda: app_status(service.health()))
        add_session_routes(app, service, registration)
        attach(app, registration)
        return app

    return make


def _advert(config: RunnerConfig, mode: str, capacity: int, path: str) -> AppAdvert:
    return AppAdvert(
        runner_url=runner_url(config.app_public_url, config.host, config.port),
        app=config.app_name or f"{config.pipeline}/{config.model_id}",
        mode=mode,
        capacity=capacity,
        version=config.version,
        metadata=pipeline_app_metadata(config.pipeline, config.model_id, path),
        gpu=gpu_advert(config.device, hardware.gpu_info()),
        price_info=parse_app_price(config.app_price),
    )


def attach(app: FastAPI, registration: AppRegistration) -> None:
    """Run ``registration`` inside ``app``'s lifespan: registered once the app has started (the model loading
    meanwhile reports ``loading``), unregistered before the app's own shutdown unloads anything."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with inner(target) as state, registration.running():
            yield state

    app.router.lifespan_context = lifespan
    app.state.app_registration = registration
