"""Live video-to-video on the gateway: streams (:class:`LiveSessions`, :class:`LiveSession`), their media
loops against orchestrators, and the HTTP API under ``/live/video-to-video/`` (see docs/live.md)."""

from lpnode.gateway.live.policy import LiveSettings
from lpnode.gateway.live.sessions import LiveSession, LiveSessions

__all__ = ["LiveSession", "LiveSessions", "LiveSettings"]
