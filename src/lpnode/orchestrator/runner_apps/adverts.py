"""What a runner app tells the orchestrator about itself (a heartbeat body, a ``runners.json`` entry), checked.

:func:`parse_advert` and :func:`parse_static_document` turn decoded JSON into frozen :class:`Advert` /
:class:`StaticEntry` values or raise :class:`AdvertError` with go-livepeer's message (research §4.2, §5.3), which
the routes answer as 400. Off-chain, ``price_info`` is neither checked nor kept (go does the same).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from lpnode.protocol.runner_apps import (
    METADATA_MAX_BYTES,
    ROUTING_LABEL,
    ROUTING_RUNNER_ID,
    normalize_mode,
)

PRICE_UNITS = ("hour", "720p", "fixed")


class AdvertError(ValueError):
    """A heartbeat body or static entry that cannot be registered; ``str()`` is the 400 body."""


@dataclass(frozen=True)
class Gpu:
    id: str = ""
    name: str = ""
    vram_mb: int = 0

    def to_json(self) -> dict[str, Any]:
        """Only the non-empty keys (go's ``omitempty``)."""
        out: dict[str, Any] = {}
        if self.id:
            out["id"] = self.id
        if self.name:
            out["name"] = self.name
        if self.vram_mb:
            out["vram_mb"] = self.vram_mb
        return out


@dataclass(frozen=True)
class PriceInfo:
    """A registered price in USD: ``price`` per ``unit`` (``hour``, ``720p`` or ``fixed``)."""

    price: Decimal
    currency: str = "usd"
    unit: str = "hour"


@dataclass(frozen=True)
class Advert:
    """One runner's self-description; ``mode`` is canonical (``persistent`` or ``single-shot``)."""

    runner_id: str
    runner_url: str
    app: str
    mode: str
    capacity: int
    label: str = ""
    proxy: bool = False
    version: str = ""
    metadata: str = ""
    status: str = ""
    gpu: Gpu | None = None
    price_info: PriceInfo | None = None

    @property
    def ready(self) -> bool:
        return self.status in ("", "ready")


@dataclass(frozen=True)
class StaticEntry:
    """One ``runners.json`` entry: an advert plus how it is routed and health-checked."""

    advert: Advert
    routing: str
    health_url: str
    healthy_status_code: int

    @property
    def route_key(self) -> str:
        return self.advert.label if self.routing == ROUTING_LABEL else ""


def decode_json(body: bytes) -> Any:
    """Decode a request body like Go does: invalid UTF-8 becomes U+FFFD; a syntax error raises AdvertError."""
    try:
        return json.loads(body.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise AdvertError(f"invalid JSON: {exc}") from None


def _field(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    kind_ok = False if isinstance(value, bool) and kind is not bool else isinstance(value, kind)
    if not kind_ok:
        name = kind.__name__ if isinstance(kind, type) else "value"
        raise AdvertError(f"json: cannot unmarshal {type(value).__name__} into field {key} of type {name}")
    return value


def absolute_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _gpu(value: Any) -> Gpu | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise AdvertError("json: cannot unmarshal bool into field gpu")
    if isinstance(value, int):
        if value < 0:
            return Gpu(id=str(value))
        return Gpu(id=str(value), name=_local_gpu_name(value))
    if not isinstance(value, dict):
        raise AdvertError("json: gpu must be an object or an integer device index")
    vram = value.get("vram_mb", 0)
    if not isinstance(vram, int) or isinstance(vram, bool):
        raise AdvertError("json: cannot unmarshal gpu.vram_mb: must be an integer")
    gid, name = value.get("id", ""), value.get("name", "")
    if not isinstance(gid, str) or not isinstance(name, str):
        raise AdvertError("json: gpu.id and gpu.name must be strings")
    gpu = Gpu(id=gid, name=name, vram_mb=vram)
    return gpu if gpu.to_json() else None


def _local_gpu_name(index: int) -> str:
    from lpnode.runner.hardware import gpu_info

    for gid, info in gpu_info().items():
        if gid == str(index):
            return str(getattr(info, "name", "") or "")
    return ""


def _price(value: Any, on_chain: bool) -> PriceInfo | None:
    if not on_chain:
        return None
    if value is None:
        raise AdvertError("price_info.price is required")
    if not isinstance(value, dict):
        raise AdvertError("json: price_info must be an object")
    raw = value.get("price")
    if raw is None or raw == "":
        raise AdvertError("price_info.price is required")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise AdvertError("price_info.price must be a positive decimal")
    try:
        price = Decimal(str(raw).strip())
    except InvalidOperation:
        raise AdvertError("price_info.price must be a positive decimal") from None
    if not price.is_finite() or price <= 0:
        raise AdvertError("price_info.price must be a positive decimal")
    currency = str(value.get("currency") or "usd").strip().lower()
    if currency != "usd":
        raise AdvertError("price_info.currency must be usd")
    unit = str(value.get("unit") or "hour").strip().lower()
    if unit not in PRICE_UNITS:
        raise AdvertError("price_info.unit must be hour, 720p, or fixed")
    return PriceInfo(price, currency, unit)


def parse_advert(body: Any, *, on_chain: bool = False, static: bool = False) -> Advert:
    """A checked advert from a decoded heartbeat body (or static entry); AdvertError with go's words."""
    if not isinstance(body, dict):
        raise AdvertError("json: request body must be a JSON object")
    runner_id = _field(body, "runner_id", str, "").strip()
    runner_url = _field(body, "runner_url", str, "")
    if not absolute_http_url(runner_url):
        raise AdvertError("invalid runner_url")
    app = _field(body, "app", str, "")
    if static:
        app = app.strip()
    if not app or app != app.strip():
        raise AdvertError("app must be trimmed")
    metadata = _field(body, "metadata", str, "")
    if len(metadata.encode("utf-8", errors="surrogatepass")) > METADATA_MAX_BYTES:
        raise AdvertError(f"metadata must be at most {METADATA_MAX_BYTES} bytes")
    try:
        metadata.encode("utf-8")
    except UnicodeEncodeError:
        raise AdvertError("metadata must be valid UTF-8") from None
    if "\ufffd" in metadata:
        raise AdvertError("metadata must not contain Unicode replacement character U+FFFD")
    status = _field(body, "status", str, "")
    if status != status.strip().lower():
        raise AdvertError("status must be lowercase and trimmed")
    mode = normalize_mode(_field(body, "mode", str, ""))
    if mode is None:
        raise AdvertError('mode must be "persistent" or "single-shot"')
    capacity = _field(body, "capacity", int, 0)
    if capacity < 0:
        raise AdvertError("capacity must be >= 0")
    return Advert(
        runner_id=runner_id,
        runner_url=runner_url,
        app=app,
        mode=mode,
        capacity=capacity or 1,
        label=_field(body, "label", str, ""),
        proxy=_field(body, "proxy", bool, False),
        version=_field(body, "version", str, ""),
        metadata=metadata,
        status=status,
        gpu=_gpu(body.get("gpu")),
        price_info=_price(body.get("price_info"), on_chain),
    )


def resolve_health_url(runner_url: str, health_url: str) -> str:
    """A ``/path`` health URL is appended to ``runner_url`` (right-trimmed of ``/``)."""
    if health_url.startswith("/"):
        return runner_url.rstrip("/") + health_url
    return health_url


def parse_static_entry(index: int, entry: Any, *, on_chain: bool = False) -> StaticEntry:
    prefix = f"runners[{index}]: "
    try:
        if not isinstance(entry, dict):
            raise AdvertError("entry must be a JSON object")
        routing = _field(entry, "routing", str, "") or ROUTING_RUNNER_ID
        if routing not in (ROUTING_RUNNER_ID, ROUTING_LABEL):
            raise AdvertError('routing must be "runner-id" or "label"')
        label = _field(entry, "label", str, "")
        if not label or label != label.strip():
            raise AdvertError("label is required and must be trimmed")
        health = _field(entry, "health_url", str, "")
        if not health:
            raise AdvertError("health_url is required")
        runner_url = _field(entry, "runner_url", str, "")
        if health.startswith("/") and not absolute_http_url(runner_url):
            raise AdvertError("invalid runner_url")
        health = resolve_health_url(runner_url, health)
        if not absolute_http_url(health):
            raise AdvertError("invalid health_url")
        code = _field(entry, "healthy_status_code", int, 0) or 200
        if not 100 <= code <= 599:
            raise AdvertError("healthy_status_code must be a valid HTTP status code")
        if routing == ROUTING_LABEL and "/" in label:
            raise AdvertError('label cannot contain / when routing is "label"')
        body = {k: v for k, v in entry.items() if k not in ("runner_id", "status", "session_ids")}
        advert = parse_advert(body, on_chain=on_chain, static=True)
    except AdvertError as exc:
        raise AdvertError(prefix + str(exc)) from None
    return StaticEntry(advert, routing, health, code)


def parse_static_document(document: Any, *, on_chain: bool = False) -> list[StaticEntry]:
    """Every entry of a ``{"runners": [...]}`` document, checked; one bad entry fails the whole batch."""
    if not isinstance(document, dict):
        raise AdvertError("json: the document must be an object with a runners list")
    runners = document.get("runners") or []
    if not isinstance(runners, list):
        raise AdvertError("json: runners must be a list")
    entries = [parse_static_entry(i, e, on_chain=on_chain) for i, e in enumerate(runners)]
    seen: set[str] = set()
    for entry in entries:
        if entry.advert.label in seen:
            raise AdvertError(f'duplicate label "{entry.advert.label}"')
        seen.add(entry.advert.label)
    return entries
