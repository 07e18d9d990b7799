"""Names and values on the trickle wire, shared by the server and the clients."""

from __future__ import annotations

SEQ = b"lp-trickle-seq"
"""The seq a response is about (a GET's segment, a POST's effective seq, the seq a 470 refused)."""
LATEST = b"lp-trickle-latest"
"""The channel's next seq to be written (its live edge)."""
CLOSED = b"lp-trickle-closed"
"""Present when the channel is closed: no more segments will come."""
CLOSED_VALUE = b"terminated"
RESET = b"lp-trickle-reset"
"""Sent by a publisher that restarted: the server closes the channel's older segments."""
EXPECT_CONTENT = b"expect-content"
"""The MIME type of a channel, on ``POST /{channel}``."""
STATUS_SEQ_GONE = 470
"""The channel exists but does not hold the seq asked for (too old, or too far ahead)."""

DEFAULT_MIME_TYPE = "video/MP2T"
"""What go-livepeer's publisher sends when given no MIME type."""
