"""Runner configuration: the ai-runner container's environment contract, plus CLI flags.

An ai-runner container is configured by env (`PIPELINE`, `MODEL_ID`, `MODEL_DIR`, `AUTH_TOKEN`,
`VERSION` and optimisation flags such as `SFAST`, `DEEPCACHE`, `TORCH_COMPILE`, `BFLOAT16`). The runner
reads the same variables; each also has a flag, and a flag wins over the variable. `PIPELINE_CLASS`
(``module:Class``) serves a pipeline class of your own; `MODEL_ID` is then optional.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lpnode import __version__
from lpnode.errors import ConfigError
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
    return config
