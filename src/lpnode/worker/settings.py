"""A worker's settings: which orchestrator, its secret, and the runners to serve its jobs with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lpnode.errors import ConfigError
from lpnode.orchestrator.settings import slot_count, slot_devices

if TYPE_CHECKING:
    from lpnode.orchestrator.ai_models import AIModelConfig


@dataclass(frozen=True)
class WorkerSettings:
    orch_url: str
    """``https://HOST:PORT`` (TLS, as go-livepeer workers connect) or ``http://HOST:PORT`` (h2c)."""
    secret: str
    ai_models: Sequence[AIModelConfig]
    models_dir: Path
    data_dir: Path
    gpus: Sequence[str] = ()
    runners_per_gpu: int = 1
    cpu_slots: int = 0
    safety_checker: str = ""
    runner_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return slot_count(self.gpus, self.runners_per_gpu, self.cpu_slots, self.ai_models)

    @property
    def slot_devices(self) -> list[str]:
        return slot_devices(self.gpus, self.runners_per_gpu)


def orchestrator_url(value: str) -> str:
    """``-orchAddr``: ``HOST:PORT`` (TLS), or an ``https://``/``http://`` URL; one address only."""
    text = value.strip()
    if not text:
        raise ConfigError("give --orch-addr HOST:PORT, the orchestrator this worker serves")
    if "," in text:
        raise ConfigError(f"--orch-addr {value!r}: a worker attaches to one orchestrator; give one HOST:PORT")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port or parts.path not in ("", "/"):
        raise ConfigError(f"--orch-addr {value!r} is not HOST:PORT (e.g. 203.0.113.7:8935)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"
