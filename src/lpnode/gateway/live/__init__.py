"""Live video-to-video on the gateway: streams (:class:`LiveSessions`, :class:`LiveSession`), their media
loops against orchestrators, and the HTTP API under ``/live/video-to-video/`` (see docs/live.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.gateway.live.policy import LiveSettings
    from lpnode.gateway.live.sessions import LiveSession, LiveSessions

__getattr__ = lazy_exports(__name__, {"policy": ("LiveSettings",), "sessions": ("LiveSession", "LiveSessions")})

__all__ = ["LiveSession", "LiveSessions", "LiveSettings"]
