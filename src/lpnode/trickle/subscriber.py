"""The trickle subscriber: one streaming ``GET {url}/{seq}`` per segment, the next one always preconnected.

    async with TrickleSubscriber(url) as sub:          # start_seq=-1: from the next segment written
        async for segment in sub:                      # ends when the channel closes or is gone
            async for chunk in segment:                # bytes as the publisher sends them
                ...

Behaviour, as go-livepeer's and ai-runner's subscribers:

- After each segment's headers arrive the next seq (``Lp-Trickle-Seq`` + 1) is requested in the background,
  so it is waiting at the server when the publisher starts it.
- 470 (the seq is too old, or too far ahead): jump to ``Lp-Trickle-Latest`` at once.
- ``Lp-Trickle-Closed`` or 404: the iteration ends; :attr:`TrickleSubscriber.end` says which.
- Other failures (refusals, connection errors) are retried ``retry_delay`` apart; after ``max_retries`` in a
  row :class:`TrickleUnreachableError` is raised.
- A request still waiting for its segment ``refresh_after`` seconds after it went out is re-issued
  (go-livepeer's 20 s preconnect refresh), so idle connections are never left to time out somewhere in
  between. (With a session passed in, which lacks the trace that marks a request as sent, there is no
  refresh.)
- A segment body that stops short (its publisher failed, or the server cut it at its size limit) raises
  :class:`SegmentCutOffError` while iterating over it; the next segment is still served.
- Moving on to the next segment closes the previous one, read or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import aiohttp

from lpnode.logs import log_event
from lpnode.trickle.errors import SegmentCutOffError, TrickleHTTPError, TrickleUnreachableError
from lpnode.trickle.headers import CLOSED, LATEST, SEQ, STATUS_SEQ_GONE
from lpnode.trickle.session import TlsVerify, close_session, has_header, int_header, new_session

log = logging.getLogger("lpnode.trickle.subscriber")

MAX_RETRIES = 5
RETRY_DELAY = 0.5
REFRESH_AFTER = 20.0
READ_CHUNK = 32 * 1024

End = Literal["closed", "not found"]


class SegmentReader:
    """One segment being read. Iterate over it for its bytes as they arrive, or ``await read()``."""

    def __init__(self, url: str, seq: int, response: aiohttp.ClientResponse) -> None:
        self.url = url
        self.seq = seq
        self.latest = int_header(response.headers, LATEST)
        """The channel's next seq when this segment was asked for, if it differed from ``seq``."""
        self.content_type = response.headers.get("Content-Type", "")
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(READ_CHUNK):
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise SegmentCutOffError(f"{self.url}/{self.seq}: the segment was cut off ({exc})") from None
        finally:
            self.close()

    async def read(self) -> bytes:
        """The whole segment."""
        return b"".join([chunk async for chunk in self])

    def close(self) -> None:
        self._response.close()


@dataclass
class _Reply:
    seq: int
    response: aiohttp.ClientResponse | None
    end: End | None = None


class TrickleSubscriber:
    """Reads the segments of one channel URL (``https://host:port/ai/trickle/{channel}``) in order."""

    def __init__(
        self,
        url: str,
        start_seq: int = -1,
        *,
        session: aiohttp.ClientSession | None = None,
        verify_tls: TlsVerify = False,
        headers: Mapping[str, str] | None = None,
        max_retries: int = MAX_RETRIES,
        retry_delay: float = RETRY_DELAY,
        refresh_after: float = REFRESH_AFTER,
        connection_close: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.seq = start_seq
        """The seq asked for next (-1: the next one written, -2: the one being written)."""
        self.headers = dict(headers or {})
        if connection_close:
            self.headers["Connection"] = "close"
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.refresh_after = refresh_after
        self.end: End | None = None
        """Why the iteration ended: the channel was closed, or it is not (or no longer) on the server."""
        self._verify_tls = verify_tls
        self._own_session = session is None
        self._session = session
        self._pending: asyncio.Task[_Reply] | None = None
        self._current: SegmentReader | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._verify_tls)
        return self._session

    async def __aenter__(self) -> TrickleSubscriber:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> TrickleSubscriber:
        return self

    async def __anext__(self) -> SegmentReader:
        segment = await self.next()
        if segment is None:
            raise StopAsyncIteration
        return segment

    async def next(self) -> SegmentReader | None:
        """The next segment once its first byte is there; None when the channel ended (see :attr:`end`)."""
        if self.end is not None:
            return None
        if self._current is not None:
            self._current.close()
            self._current = None
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch(self.seq))
        try:
            reply = await self._pending
        finally:
            self._pending = None
        if reply.response is None:
            self.end = reply.end
            return None
        self.seq = reply.seq + 1
        self._pending = asyncio.ensure_future(self._fetch(self.seq))
        self._current = SegmentReader(self.url, reply.seq, reply.response)
        return self._current

    async def set_seq(self, seq: int) -> None:
        """Read ``seq`` next (dropping a preconnected request for another seq)."""
        await self._cancel_pending()
        self.seq = seq
        self.end = None

    async def _fetch(self, seq: int) -> _Reply:
        failures = 0
        while True:
            url = f"{self.url}/{seq}"
            try:
                response = await self._get(url)
            except aiohttp.ClientError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise TrickleUnreachableError(f"{url}: {exc or type(exc).__name__}") from None
                await asyncio.sleep(self.retry_delay)
                continue
            if response is None:
                log_event(log, "trickle segment not started yet; asking again", logging.DEBUG, url=url)
                continue
            if response.status == 200 and has_header(response.headers, CLOSED):
                response.close()
                return _Reply(seq, None, "closed")
            if response.status == 200:
                given = int_header(response.headers, SEQ)
                return _Reply(given if given is not None else max(seq, 0), response)
            if response.status == 404:
                response.close()
                return _Reply(seq, None, "not found")
            failures += 1
            if failures > self.max_retries:
                text = await response.text(errors="replace")
                response.close()
                raise TrickleHTTPError(url, response.status, text)
            latest = int_header(response.headers, LATEST)
            response.close()
            if response.status == STATUS_SEQ_GONE and latest is not None:
                log_event(log, "trickle seq gone; jumping to the live edge", logging.DEBUG, url=url, latest=latest)
                seq = latest
                continue
            await asyncio.sleep(self.retry_delay)

    async def _get(self, url: str) -> aiohttp.ClientResponse | None:
        """``GET url`` once its answer starts; None when it has not ``refresh_after`` seconds after the request
        went out (the time to connect does not count)."""
        sent = asyncio.Event()
        request = asyncio.ensure_future(self.session.get(url, headers=self.headers, trace_request_ctx=sent))
        waiter = asyncio.ensure_future(sent.wait())
        try:
            await asyncio.wait({request, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not request.done():
                await asyncio.wait({request}, timeout=self.refresh_after)
        finally:
            waiter.cancel()
            if not request.done():
                request.cancel()
                await asyncio.wait({request})
        if request.cancelled():
            return None
        return request.result()

    async def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                reply = await self._pending
                if reply.response is not None:
                    reply.response.close()
            self._pending = None

    async def close(self) -> None:
        """Drop the preconnected request and the segment being read; close the session."""
        await self._cancel_pending()
        if self._current is not None:
            self._current.close()
            self._current = None
        if self._own_session and self._session is not None:
            await close_session(self._session)
            self._session = None
