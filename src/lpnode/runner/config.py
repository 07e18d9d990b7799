"""Runner configuration: the ai-runner container's environment contract, plus CLI flags.

An ai-runner container is configured by env (`PIPELINE`, `MODEL_ID`, `MODEL_DIR`, `AUTH_TOKEN`,
`VERSION` and optimisation flags such as `SFAST`, `DEEPCACHE`, `TORCH_COMPILE`, `BFLOAT16`). The runner
reads the same variables; each also has a flag, and a flag wins over the variable. `PIPELINE_CLASS`
(``module:Class``) serves a pipeline class of your own; `MODEL_ID` is then optional.

`LIVE_RUNNER_ORCH` (``--live-runner-orch``) with `ORCH_SECRET` also registers the runner with that Live
Runner orchestrator as a runner app (:mod:`lpnode.runner.app_serving`); `LIVE_RUNNER_APP_NAME`,
`LIVE_RUNNER_APP_CAPACITY`, `LIVE_RUNNER_APP_PRICE` and `LIVE_RUNNER_PUBLIC_URL` shape what it advertises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from lpnode import __version__
from lpnode.errors import ConfigError
from lpnode.protocol.orch_secret import read_secret
from lpnode.runner.app_advert import parse_app_price
from lpnode.runner.pipelines import pipeline_names
from lpnode.runner.store import DEFAULT_MODELS_DIR
from lpnode.schemas.limits import from_env as limits_from_env

# Optimisation flags go-livepeer passes through from aiModels.json `optimization_flags`.
OPTIMIZATION_FLAGS = (
    "SFAST",
    "SFAST_WARMUP",
    "DEEPCACHE",
    "TORCH_COMPILE",
    "BFLOAT16",
    "SAFETY_CHECKER_DEVICE",
    "BACKEND",
)
DEFAULT_MODEL_DIR = DEFAULT_MODELS_DIR  # one default for every command: lpnode.runner.store's
DEFAULT_SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"
UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class RunnerConfig:
    """Everything a runner needs to start. Build it with :func:`config_from_env`."""

    pipeline: str
    model_id: str
    model_dir: Path = DEFAULT_MODEL_DIR
    pipeline_class: str = ""  # "module:Class" of a custom pipeline; ``pipeline`` is then its route name
    auth_token: str = ""
    version: str = __version__
    host: str = "127.0.0.1"
    port: int = 8000
    optimization_flags: Mapping[str, str] = field(default_factory=dict)
    max_in_flight: int = 0  # 0: the pipeline's own default (1 for diffusion, more for llm)
    max_queue: int = 4
    safety_checker_id: str = DEFAULT_SAFETY_CHECKER
    device: str = ""  # "" picks cuda, then mps, then cpu
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    allow_downloads: bool = False
    upstream_url: str = ""  # llm: forward generation to this OpenAI-compatible server (e.g. Ollama)
    upstream_model: str = ""  # llm: the upstream's name for the model; default from a built-in table
    upstream_api_key: str = ""
    exit_with_parent: bool = False  # stop when the starting process dies (orchestrator-managed runners)
    app_orchestrator: str = ""  # a Live Runner orchestrator to register with as a runner app ("": none)
    app_orch_secret: str = ""  # its -orchSecret (already read from the file when a file was named)
    app_name: str = ""  # the app name advertised; "" is "<pipeline>/<model_id>"
    app_capacity: int = 0  # sessions at once; 0: the runner's own concurrency (1 for a live pipeline)
    app_price: str = ""  # "USD[/UNIT]", UNIT hour (default), 720p or fixed; "" advertises no price
    app_public_url: str = ""  # this runner's URL as the orchestrator reaches it; "" is http://HOST:PORT

    def flag(self, name: str) -> bool:
        """True when optimisation flag ``name`` is set to a true-ish value."""
        return self.optimization_flags.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def config_from_env(env: Mapping[str, str] | None = None, **overrides: object) -> RunnerConfig:
    """Read the ai-runner environment contract; keyword ``overrides`` (from CLI flags) win when not None."""
    env = os.environ if env is None else env
    values: dict[str, object] = {
        "pipeline": env.get("PIPELINE", ""),
        "pipeline_class": env.get("PIPELINE_CLASS", "").strip(),
        "model_id": env.get("MODEL_ID", ""),
        "model_dir": Path(env["MODEL_DIR"]).expanduser() if env.get("MODEL_DIR") else DEFAULT_MODEL_DIR,
        "auth_token": env.get("AUTH_TOKEN", ""),
        "version": env.get("VERSION", "") or __version__,
        "host": env.get("HOST", "") or "127.0.0.1",
        "port": _int(env, "PORT", 8000, 1),
        "optimization_flags": {k: env[k] for k in OPTIMIZATION_FLAGS if env.get(k)},
        "max_in_flight": _int(env, "RUNNER_MAX_IN_FLIGHT", 0, 1),
        "max_queue": _int(env, "RUNNER_MAX_QUEUE", 4, 0),
        "safety_checker_id": env.get("SAFETY_CHECKER_MODEL_ID", "") or DEFAULT_SAFETY_CHECKER,
        "device": env.get("RUNNER_DEVICE", ""),
        "threads": _int(env, "TORCH_THREADS", 0, 0),
        "allow_downloads": env.get("HF_HUB_OFFLINE", "1").strip() in {"0", "false"},
        "upstream_url": env.get("LLM_UPSTREAM_URL", ""),
        "upstream_model": env.get("LLM_UPSTREAM_MODEL", ""),
        "upstream_api_key": env.get("LLM_UPSTREAM_API_KEY", ""),
        "exit_with_parent": env.get("RUNNER_EXIT_WITH_PARENT", "").strip().lower() in {"1", "true", "yes"},
        "app_orchestrator": env.get("LIVE_RUNNER_ORCH", "").strip(),
        "app_orch_secret": env.get("ORCH_SECRET", ""),
        "app_name": env.get("LIVE_RUNNER_APP_NAME", "").strip(),
        "app_capacity": _int(env, "LIVE_RUNNER_APP_CAPACITY", 0, 0),
        "app_price": env.get("LIVE_RUNNER_APP_PRICE", "").strip(),
        "app_public_url": env.get("LIVE_RUNNER_PUBLIC_URL", "").strip(),
    }
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "optimization_flags":
            merged = dict(values["optimization_flags"])  # type: ignore[call-overload]
            merged.update(value)
            values[key] = merged
        else:
            values[key] = value
    config = RunnerConfig(**values)  # type: ignore[arg-type]
    if not config.pipeline and not config.pipeline_class:
        raise ConfigError(
            "no pipeline given: set PIPELINE or pass --pipeline (e.g. text-to-image), "
            "or name a class with --pipeline-class module:Class"
        )
    # Custom pipelines may have no model; the runner then reports the pipeline name as its model id.
    if not config.model_id and not config.pipeline_class and config.pipeline in pipeline_names():
        raise ConfigError("no model given: set MODEL_ID or pass --model-id (a Hugging Face repo id)")
    limits_from_env(env)  # a bad LPNODE_LIMITS stops the runner at start, not at its first request
    if config.upstream_url and not config.upstream_url.startswith(("http://", "https://")):
        raise ConfigError(f"the LLM upstream must be an http(s) URL, got {config.upstream_url!r}")
    if not 1 <= config.port <= 65535:
        raise ConfigError(f"port must be between 1 and 65535, got {config.port}")
    return _checked_app_settings(config)


def _checked_app_settings(config: RunnerConfig) -> RunnerConfig:
    """The runner-app settings checked, and the orchestrator secret read (a file path gives its contents)."""
    if not config.app_orchestrator:
        given = [flag for flag, value in _APP_FLAGS if getattr(config, value)]
        if given:
            raise ConfigError(f"{given[0]} only applies with --live-runner-orch (LIVE_RUNNER_ORCH)")
        return config
    if not _is_http_url(config.app_orchestrator):
        raise ConfigError(
            f"--live-runner-orch must be the orchestrator's http(s) URL, e.g. https://orch.example:8935, "
            f"got {config.app_orchestrator!r}"
        )
    if config.app_public_url and not _is_http_url(config.app_public_url):
        raise ConfigError(f"--public-url must be an http(s) URL, got {config.app_public_url!r}")
    if config.app_capacity < 0:
        raise ConfigError(f"--app-capacity must be 0 or more, got {config.app_capacity}")
    if config.app_name and config.app_name != config.app_name.strip():
        raise ConfigError(f"--app-name must not start or end with spaces, got {config.app_name!r}")
    parse_app_price(config.app_price)  # a bad price is one clear line at start
    secret = read_secret(config.app_orch_secret) if config.app_orch_secret.strip() else ""
    if not secret:
        raise ConfigError(
            "--live-runner-orch needs the orchestrator's secret: pass --orch-secret (the secret or a file holding "
            "it) or set ORCH_SECRET"
        )
    return replace(config, app_orch_secret=secret)


_APP_FLAGS = (  # the secret is left out: an ORCH_SECRET in the environment is no mistake on its own
    ("--app-name", "app_name"),
    ("--app-capacity", "app_capacity"),
    ("--app-price", "app_price"),
    ("--public-url", "app_public_url"),
)


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)
