"""What a runner advertises as a Live Runner app: its price, URL, GPU, status and description.

Pure functions of the runner's settings, so the flags can be checked at start and tests need no runner.
"""

from __future__ import annotations

import socket
from decimal import Decimal, InvalidOperation
from typing import Any

from lpnode.errors import ConfigError
from lpnode.protocol.runner_apps import (
    PRICE_UNITS,
    STATUS_ERROR,
    STATUS_LOADING,
    STATUS_READY,
)

DEFAULT_PRICE_UNIT = "hour"
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def parse_app_price(text: str) -> dict[str, Any] | None:
    """``--app-price USD[/UNIT]`` as the heartbeat's ``price_info`` (None for ""): a positive decimal of US
    dollars per UNIT, ``hour`` (default), ``720p`` (an hour of 720p30 video) or ``fixed`` (per session)."""
    text = text.strip()
    if not text:
        return None
    amount, _, unit = text.partition("/")
    unit = unit.strip().lower() or DEFAULT_PRICE_UNIT
    try:
        price = Decimal(amount.strip().removeprefix("$"))
    except InvalidOperation:
        price = Decimal(0)
    if not price.is_finite() or price <= 0:
        raise ConfigError(f"--app-price must be a positive number of US dollars, e.g. 0.5/hour, got {text!r}")
    if unit not in PRICE_UNITS:
        raise ConfigError(f"--app-price unit must be {', '.join(PRICE_UNITS)}, got {unit!r} in {text!r}")
    return {"price": float(price), "currency": "usd", "unit": unit}


def runner_url(public_url: str, host: str, port: int) -> str:
    """The URL the orchestrator proxies to: ``--public-url``, else this runner's own address (a wildcard
    listen address is named by the machine's host name)."""
    if public_url:
        return public_url.rstrip("/")
    if host in _WILDCARD_HOSTS:
        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def gpu_advert(device: str, gpus: dict[str, Any]) -> dict[str, Any] | None:
    """The GPU the runner uses, as ``{"id", "name", "vram_mb"}`` (None on a CPU): ``gpus`` is
    :func:`lpnode.runner.hardware.gpu_info`, keyed by device index; ``device`` is ``cuda:N``, ``cuda`` or ""."""
    if device.startswith(("cpu", "mps")) or not gpus:
        return None
    index = device.partition(":")[2] or "0"
    info = gpus.get(index)
    if info is None:
        return None
    advert: dict[str, Any] = {"id": index, "name": getattr(info, "name", "")}
    memory = int(getattr(info, "memory_total", 0))
    if memory:
        advert["vram_mb"] = memory // (1024 * 1024)
    return advert


def app_status(health: str) -> str:
    """The heartbeat ``status`` for a runner's ``/health`` status: IDLE and OK are ready, LOADING is loading,
    anything else an error. Only a ready runner is offered to clients."""
    if health in {"IDLE", "OK"}:
        return STATUS_READY
    if health == "LOADING":
        return STATUS_LOADING
    return STATUS_ERROR
