"""Trickle: Livepeer's segmented publish/subscribe protocol over HTTP, which carries live video.

- :class:`TrickleServer` (an ASGI app; the orchestrator mounts it at ``/ai/trickle/``) and its
  :class:`TrickleSettings`.
- :class:`TricklePublisher` and :class:`TrickleSubscriber`, aiohttp clients for any trickle server
  (ours, go-livepeer's).

The protocol, the server's rules and the client API are described in docs/trickle.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.trickle.channels import RING_SIZE, Channel, ChannelRegistry, Segment
    from lpnode.trickle.errors import (
        ChannelClosedError,
        ChannelNotFoundError,
        SegmentCutOffError,
        SegmentTooLargeError,
        TrickleError,
        TrickleHTTPError,
        TrickleUnreachableError,
    )
    from lpnode.trickle.publisher import SegmentWriter, TricklePublisher
    from lpnode.trickle.server import TrickleServer, TrickleSettings
    from lpnode.trickle.subscriber import SegmentReader, TrickleSubscriber

__getattr__ = lazy_exports(
    __name__,
    {
        "channels": ("RING_SIZE", "Channel", "ChannelRegistry", "Segment"),
        "errors": (
            "ChannelClosedError",
            "ChannelNotFoundError",
            "SegmentCutOffError",
            "SegmentTooLargeError",
            "TrickleError",
            "TrickleHTTPError",
            "TrickleUnreachableError",
        ),
        "publisher": ("SegmentWriter", "TricklePublisher"),
        "server": ("TrickleServer", "TrickleSettings"),
        "subscriber": ("SegmentReader", "TrickleSubscriber"),
    },
)

__all__ = [
    "RING_SIZE",
    "Channel",
    "ChannelClosedError",
    "ChannelNotFoundError",
    "ChannelRegistry",
    "Segment",
    "SegmentCutOffError",
    "SegmentReader",
    "SegmentTooLargeError",
    "SegmentWriter",
    "TrickleError",
    "TrickleHTTPError",
    "TricklePublisher",
    "TrickleServer",
    "TrickleSettings",
    "TrickleSubscriber",
    "TrickleUnreachableError",
]
