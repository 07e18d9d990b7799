"""Errors the trickle clients raise.

    TrickleError                     a trickle call failed (base; an ``LpnodeError``)
    ├── ChannelNotFoundError         404: the channel does not exist (never made, deleted or swept)
    ├── ChannelClosedError           the server says the channel is closed (``Lp-Trickle-Closed``)
    ├── SegmentCutOffError           a segment ended before its end: its publisher failed or went away
    ├── TrickleHTTPError             any other refusal; carries the HTTP status and the server's text
    │   └── SegmentTooLargeError     413: the server cut a segment off at its size limit
    └── TrickleUnreachableError      the server could not be reached after the allowed retries

aiohttp exceptions never leave the client modules; they are mapped to these.
"""

from __future__ import annotations

from lpnode.errors import LpnodeError


class TrickleError(LpnodeError):
    """A trickle request failed."""


class ChannelNotFoundError(TrickleError):
    """The server answered 404: no such channel."""


class ChannelClosedError(TrickleError):
    """The channel was closed (deleted, or swept as idle) while publishing to it."""


class SegmentCutOffError(TrickleError):
    """A segment did not end cleanly: the server closed it early or a reader's body was cut off."""


class TrickleHTTPError(TrickleError):
    """The server refused a request."""

    def __init__(self, url: str, status: int, text: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {text.strip() or 'no message'}")
        self.url = url
        self.status = status
        self.text = text


class SegmentTooLargeError(TrickleHTTPError):
    """The server cut a segment off at its size limit (413)."""


class TrickleUnreachableError(TrickleError):
    """The server could not be reached, or the connection broke, after the allowed retries."""
