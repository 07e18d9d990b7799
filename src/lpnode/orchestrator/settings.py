"""The orchestrator's settings, resolved from its flags: where to listen, what to advertise, how to run runners.

Resolution follows go-livepeer: ``-serviceAddr`` is the public address put in ``OrchestratorInfo``
(``https://`` is assumed when it has no scheme; ``http://`` serves plain HTTP and h2c); the node listens on
``-httpAddr`` when given, else on the service port of the service host when that is a loopback address,
else on all interfaces. The admin API (``-cliAddr``, default ``127.0.0.1:7935`` as in go-livepeer) is a second,
plain-HTTP port with the full node view; ``--admin-token`` (or ``LPNODE_ADMIN_TOKEN``) guards it.
``-orchSecret`` is a secret or the path of a file holding it. ``-nvidia`` picks
GPUs (``all`` or ``0,1``); without GPUs runners use emulated CPU slots. On chain, ``chain`` holds the checked
chain flags (:class:`lpnode.payments.settings.ChainSettings`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lpnode.errors import ConfigError
from lpnode.orchestrator.pool.timings import PoolTimings
from lpnode.protocol.auth_token import TOKEN_VALIDITY_SECONDS

if TYPE_CHECKING:
    from lpnode.orchestrator.ai_models import AIModelConfig
    from lpnode.payments.settings import ChainSettings

DEFAULT_SERVICE_PORT = 8935
DEFAULT_CLI_ADDR = "127.0.0.1:7935"
RESULT_TTL_SECONDS = 600.0


@dataclass(frozen=True)
class OrchestratorSettings:
    ai_models: Sequence[AIModelConfig]
    models_dir: Path
    data_dir: Path
    service_url: str
    """Public base URL, e.g. ``https://203.0.113.7:8935``; TLS when its scheme is https."""
    listen_host: str
    listen_port: int
    orch_secret: str = ""
    local_runners: bool = True
    """False (go-livepeer's ``-aiWorker=false``): no local runners; aiModels.json only prices what remote AI workers
    serve."""
    runner_backend: str = "process"
    gpus: Sequence[str] = ()
    runners_per_gpu: int = 1
    cpu_slots: int = 0
    """Emulated slots without GPUs; 0 means one per managed runner in aiModels.json."""
    runner_env: Mapping[str, str] = field(default_factory=dict)
    image_overrides: str = ""
    verbose_runner_logs: bool = False
    result_ttl: float = RESULT_TTL_SECONDS
    safety_checker: str = ""
    """Model id of the image safety checker runners load (``SAFETY_CHECKER_MODEL_ID``); empty: theirs."""
    auth_token_ttl: int = TOKEN_VALIDITY_SECONDS
    timings: PoolTimings = field(default_factory=PoolTimings)
    cli_host: str = "127.0.0.1"
    cli_port: int | None = None
    """The admin API's port; ``None``: no admin API."""
    cli_addr_given: bool = False
    """The operator named ``--cli-addr``: a busy port stops the start (the default one only warns)."""
    admin_token: str = ""
    """Required on every admin request when set."""
    chain: ChainSettings | None = None
    """The chain this node is paid on; ``None`` off-chain (the default: nothing is charged)."""
    use_live_runners: bool = False
    """``-useLiveRunners``: host runner apps (go-livepeer's Live Runner) registered by heartbeat."""
    live_runner_config: Path | None = None
    """``-liveRunnerConfig``: a static ``runners.json`` read at start (also turns runner apps on)."""
    live_runner_proxy_url: str = ""
    """``-liveRunnerProxyUrl``: the public proxy URL template; empty: ``{service_url}/run/{proxy}``."""
    live_runner_addr: str = ""
    """``-liveRunnerAddr``: the base URL runner apps use to reach this node; empty: ``service_url``."""

    @property
    def tls(self) -> bool:
        return self.service_url.startswith("https://")

    @property
    def slots(self) -> int:
        return slot_count(self.gpus, self.runners_per_gpu, self.cpu_slots, self.ai_models)

    @property
    def slot_devices(self) -> list[str]:
        return slot_devices(self.gpus, self.runners_per_gpu)


def slot_count(gpus: Sequence[str], runners_per_gpu: int, cpu_slots: int, ai_models: Sequence[AIModelConfig]) -> int:
    """Runner slots: ``runners_per_gpu`` per GPU; without GPUs ``cpu_slots``, else the managed capacity."""
    if gpus:
        return len(gpus) * runners_per_gpu
    if cpu_slots:
        return cpu_slots
    return max(1, sum(c.capacity for c in ai_models if not c.external))


def slot_devices(gpus: Sequence[str], runners_per_gpu: int) -> list[str]:
    """The GPU of each slot (``CUDA_VISIBLE_DEVICES``); GPUs alternate when several runners share one."""
    return [gpu for _ in range(runners_per_gpu) for gpu in gpus]


def service_url(value: str) -> str:
    """``-serviceAddr`` as a base URL: scheme added (https), port defaulted (8935), no path allowed."""
    text = value.strip()
    if not text:
        raise ConfigError("the service address is empty; give --service-addr HOST:PORT (e.g. 127.0.0.1:8935)")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--service-addr {value!r} is not a HOST:PORT or http(s)://HOST:PORT address")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"--service-addr {value!r} must not have a path; give HOST:PORT")
    try:
        port = parts.port or DEFAULT_SERVICE_PORT
    except ValueError:
        raise ConfigError(f"--service-addr {value!r} has an invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def listen_address(service: str, http_addr: str = "") -> tuple[str, int]:
    """Where to listen: ``http_addr`` (``HOST:PORT`` or ``:PORT``) if given, else derived from the service URL."""
    parts = urlsplit(service)
    assert parts.hostname is not None and parts.port is not None
    if http_addr:
        text = http_addr.strip()
        target = urlsplit(text if "://" in text else "//" + text)
        try:
            port = target.port or parts.port
        except ValueError:
            raise ConfigError(f"--http-addr {http_addr!r} has an invalid port") from None
        return target.hostname or "0.0.0.0", port
    return (parts.hostname if _is_loopback(parts.hostname) else "0.0.0.0"), parts.port


def cli_address(value: str) -> tuple[str, int | None]:
    """``--cli-addr``: ``HOST:PORT`` (``[::1]:7935`` for IPv6); ``off`` or ``none``: no admin API."""
    text = value.strip()
    if text.lower() in ("off", "none"):
        return "127.0.0.1", None
    target = urlsplit("//" + text.removeprefix("http://"))
    try:
        port = target.port
    except ValueError:
        port = None
    if port is None or target.path:
        raise ConfigError(f"--cli-addr {value!r} must be HOST:PORT (e.g. {DEFAULT_CLI_ADDR}), or off")
    return target.hostname or "0.0.0.0", port


def parse_gpus(value: str, detected: Sequence[str]) -> list[str]:
    """``-nvidia``: ``all`` (every GPU NVML sees), ``0,1`` (these ids), or ``""``/``none`` (CPU slots)."""
    text = value.strip().lower()
    if text in ("", "none", "cpu"):
        return []
    if text == "all":
        if not detected:
            raise ConfigError(
                "--nvidia all: no NVIDIA GPU was found (NVML did not answer); check the driver with nvidia-smi, "
                "or leave --nvidia out to run on CPU"
            )
        return list(detected)
    ids = [part.strip() for part in value.split(",") if part.strip()]
    bad = [i for i in ids if not i.isdigit() and not i.startswith("GPU-")]
    if not ids or bad:
        raise ConfigError(f"--nvidia {value!r}: give all, none, or GPU ids such as 0,1")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--nvidia {value!r} lists a GPU twice")
    return ids


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
