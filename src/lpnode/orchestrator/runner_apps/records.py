"""The registry's records: one :class:`AppRunner` per route, holding its :class:`AppSession` s, and the
identifiers and secrets it hands out.

Identifiers are go-livepeer's shapes (``runner_`` / ``session_`` + 8 chars of ``[a-z2-7]``, 26-char proxy IDs);
secrets are derived from a per-registration random seed with HMAC-SHA256, so a re-registration invalidates every
earlier heartbeat secret and session token. Peers treat all of them as opaque.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from lpnode.orchestrator.runner_apps.adverts import Advert, PriceInfo
from lpnode.protocol.runner_apps import MODE_SINGLE_SHOT, ROUTING_RUNNER_ID


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def new_runner_id() -> str:
    return "runner_" + _b32(secrets.token_bytes(5))


def new_session_id() -> str:
    return "session_" + _b32(secrets.token_bytes(5))


def new_proxy_id() -> str:
    return _b32(secrets.token_bytes(16))


def derive(seed: bytes, purpose: str) -> str:
    """A 52-char ``[a-z2-7]`` secret for ``purpose`` from ``seed``."""
    return _b32(hmac.new(seed, purpose.encode(), hashlib.sha256).digest())


def same_secret(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class AppSession:
    """One reserved slot: a persistent session, or one single-shot request."""

    id: str
    created: float
    price: PriceInfo | None
    """The runner's USD price when reserved (kept across upserts)."""
    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Descriptor by sanitized channel name."""
    proxies: dict[str, str] = field(default_factory=dict)
    """Target URL by proxy ID."""


@dataclass
class AppRunner:
    """One registered runner app. ``route`` is its key in URLs (its ID, or its label for label routing)."""

    route: str
    runner_id: str
    advert: Advert
    seed: bytes
    last_seen: float
    static: bool = False
    routing: str = ROUTING_RUNNER_ID
    health_url: str = ""
    healthy_status_code: int = 200
    healthy: bool = True
    o2r_channel: str = ""
    removed: bool = False
    sessions: dict[str, AppSession] = field(default_factory=dict)

    @property
    def heartbeat_secret(self) -> str:
        return derive(self.seed, "heartbeat")

    def session_token(self, session_id: str) -> str:
        return derive(self.seed, "session:" + session_id)

    @property
    def single_shot(self) -> bool:
        return self.advert.mode == MODE_SINGLE_SHOT

    def ready(self, now: float, ttl: float) -> bool:
        """Listed and reservable: not removed, not expired (dynamic), healthy (static), status ready."""
        if self.removed:
            return False
        if self.static:
            return self.healthy
        return self.advert.ready and now - self.last_seen <= ttl

    def live(self, now: float, ttl: float) -> bool:
        """Known at all: not removed and (static or not expired); not-ready runners are live."""
        return not self.removed and (self.static or now - self.last_seen <= ttl)

    def session_ids(self) -> list[str]:
        """Active sessions, oldest first (ties by ID)."""
        return [s.id for s in sorted(self.sessions.values(), key=lambda s: (s.created, s.id))]

    def status_view(self) -> dict[str, Any]:
        """What the node page shows (admin view; :data:`PUBLIC_HIDDEN` is stripped on the public port)."""
        a = self.advert
        return {
            "runner_id": self.runner_id,
            "route": self.route,
            "label": a.label,
            "app": a.app,
            "version": a.version,
            "mode": a.mode,
            "kind": "static" if self.static else "dynamic",
            "status": ("ready" if self.healthy else "unavailable") if self.static else (a.status or "ready"),
            "capacity": a.capacity,
            "capacity_used": len(self.sessions),
            "gpu": a.gpu.to_json() if a.gpu else {},
            "runner_url": a.runner_url,
        }


PUBLIC_HIDDEN = frozenset({"runner_url", "runner_id", "route", "label"})
"""Fields of a runner app's status view that the public ``/status`` leaves out (discovery never shows them)."""
