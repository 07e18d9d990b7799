"""The environment that makes a managed runner a Live Runner app of this orchestrator (aiModels.json
``"runner_app"``).

A runner started with these variables serves exactly what it serves without them and registers itself, by
heartbeat, with the orchestrator that started it (``lpnode runner --live-runner-orch URL --orch-secret S``, as
``LIVE_RUNNER_ORCH`` and ``ORCH_SECRET``; ``LIVE_RUNNER_APP_NAME`` and ``LIVE_RUNNER_APP_PRICE`` when the entry
names them). Every backend that starts runners passes the same variables:

    env.update(runner_app_env(spec, host))      # {} for a spec that is not a runner app

:func:`runner_app_host` says where such runners register, and refuses (one ``ConfigError`` line) an
orchestrator that has runner-app entries but does not host runner apps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lpnode.errors import ConfigError
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool.backend import RunnerSpec

APP_ENV_VARS = (
    "LIVE_RUNNER_ORCH",
    "ORCH_SECRET",
    "LIVE_RUNNER_APP_NAME",
    "LIVE_RUNNER_APP_CAPACITY",
    "LIVE_RUNNER_APP_PRICE",
    "LIVE_RUNNER_PUBLIC_URL",
)
"""Every variable that makes ``lpnode runner`` a runner app: set only from the spec, never inherited from the
orchestrator's own environment (a classic runner must not register anywhere)."""


@dataclass(frozen=True)
class RunnerAppHost:
    """Where managed runner apps register: the orchestrator's runner-facing base URL (``-liveRunnerAddr``, else
    its service address) and its ``-orchSecret``. Never logged: ``repr`` leaves the secret out."""

    url: str
    secret: str

    def __repr__(self) -> str:
        return f"RunnerAppHost(url={self.url!r})"


def runner_app_host(
    configs: Iterable[AIModelConfig], *, use_live_runners: bool, orch_secret: str, runner_addr: str, service_url: str
) -> RunnerAppHost | None:
    """The host for ``configs``' runner-app entries; None when there are none. ConfigError when some entry asks
    for a runner app and this orchestrator does not take heartbeat registrations (``-useLiveRunners`` with an
    ``-orchSecret``)."""
    apps = [c for c in configs if c.runner_app is not None]
    if not apps:
        return None
    if not use_live_runners or not orch_secret:
        first = apps[0]
        raise ConfigError(
            f'aiModels.json entry {first.pipeline} "{first.model_id}" has "runner_app": its runner registers with '
            "this orchestrator as a Live Runner app, so start the orchestrator with -useLiveRunners and -orchSecret"
        )
    return RunnerAppHost(url=(runner_addr or service_url).rstrip("/"), secret=orch_secret)


def runner_app_env(spec: RunnerSpec, host: RunnerAppHost | None) -> dict[str, str]:
    """The variables that make the runner of ``spec`` a runner app registered with ``host``; ``{}`` when
    ``spec`` is not a runner app. ConfigError when it is one and ``host`` is None (a wiring mistake:
    :func:`runner_app_host` refuses such a configuration at start)."""
    if spec.runner_app is None:
        return {}
    if host is None:
        raise ConfigError(
            f"{spec.pipeline} {spec.model_id!r} is a runner app, but this orchestrator does not host runner apps; "
            "start it with -useLiveRunners and -orchSecret"
        )
    env = {"LIVE_RUNNER_ORCH": host.url, "ORCH_SECRET": host.secret}
    if spec.runner_app.name:
        env["LIVE_RUNNER_APP_NAME"] = spec.runner_app.name
    if spec.runner_app.price:
        env["LIVE_RUNNER_APP_PRICE"] = spec.runner_app.price
    return env
