"""The trickle publisher: one streaming ``POST {url}/{seq}`` per segment, the next one always preconnected.

    async with TricklePublisher(url, "video/MP2T") as pub:
        async with pub.segment() as seg:      # POST {url}/0, and POST {url}/1 opened in the background
            await seg.write(b"...")           # streams to readers as it is written
        await pub.write(b"one whole segment") # POST {url}/1

Behaviour, as go-livepeer's and ai-runner's publishers:

- seq starts at 0 (``start_seq=-1``: ask the server for its next seq with ``GET {url}/next`` and send the first
  segment with ``Lp-Trickle-Reset`` so the server releases readers stuck on an older publisher's segments).
- A segment whose request failed before any of its bytes were taken is sent again on a fresh request (up to
  ``max_retries`` times, ``retry_delay`` apart); once bytes went out it is not (a retry could duplicate them).
  After ``max_retries`` segments in a row failed, the publisher gives up: every later call raises.
- 404 raises :class:`ChannelNotFoundError`; ``Lp-Trickle-Closed`` raises :class:`ChannelClosedError` (both
  final); 413 raises :class:`SegmentTooLargeError`; other refusals :class:`TrickleHTTPError`.
- An exception inside ``async with pub.segment()`` abandons the segment: its request is cancelled and
  ``DELETE {url}/{seq}`` wakes its readers. :meth:`close` cancels every unfinished request (the preconnect, a segment
  still open) and sends ``DELETE {url}`` (unless ``delete_on_close=False``).
- A preconnect older than ``preconnect_max_age`` seconds is replaced before use, so an idle connection a server
  has dropped never eats a segment's first bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp

from lpnode.logs import log_event
from lpnode.trickle.errors import (
    ChannelClosedError,
    ChannelNotFoundError,
    SegmentCutOffError,
    SegmentTooLargeError,
    TrickleError,
    TrickleHTTPError,
    TrickleUnreachableError,
)
from lpnode.trickle.headers import CLOSED, DEFAULT_MIME_TYPE, EXPECT_CONTENT, LATEST, RESET
from lpnode.trickle.session import TlsVerify, close_session, has_header, int_header, new_session

log = logging.getLogger("lpnode.trickle.publisher")

QUEUE_CHUNKS = 8
"""Chunks a segment buffers ahead of its request; ``write`` waits beyond that (backpressure)."""
MAX_RETRIES = 3
RETRY_DELAY = 0.25
PRECONNECT_MAX_AGE = 20.0
CLOSE_CONNECT_WAIT = 2.0
"""On close, how long a request still connecting may take to get its connection before it is cancelled anyway."""

_Queue = asyncio.Queue[bytes | None]


@dataclass(frozen=True)
class _Answer:
    status: int
    closed: bool
    text: str


class _Post:
    """One ``POST {url}/{seq}`` whose body is fed from a bounded queue (``None`` ends the body)."""

    def __init__(
        self, publisher: TricklePublisher, seq: int, *, reset: bool = False, queue: _Queue | None = None
    ) -> None:
        self.publisher = publisher
        self.seq = seq
        self.reset = reset
        self.queue: _Queue = queue or asyncio.Queue(maxsize=QUEUE_CHUNKS)
        self.taken = 0
        """Data chunks the request body took; a request that took none can be sent again safely."""
        self.ended = False
        """The request body took the end marker."""
        self.opened = time.monotonic()
        self.connected = asyncio.Event()
        """The request has its connection (its body is being read)."""
        self.task: asyncio.Task[_Answer] = asyncio.ensure_future(self._run())
        publisher._requests.add(self)
        self.task.add_done_callback(lambda _: publisher._requests.discard(self))

    async def _body(self) -> AsyncIterator[bytes]:
        self.connected.set()
        while True:
            item = await self.queue.get()
            if item is None:
                self.ended = True
                return
            self.taken += 1
            yield item

    async def _run(self) -> _Answer:
        pub = self.publisher
        headers = {"Content-Type": pub.mime_type, **pub.headers}
        if self.reset:
            headers[RESET.decode()] = "1"
        if pub.connection_close:
            headers["Connection"] = "close"
        async with pub.session.post(f"{pub.url}/{self.seq}", data=self._body(), headers=headers) as resp:
            text = "" if resp.status == 200 else await resp.text(errors="replace")
            return _Answer(resp.status, has_header(resp.headers, CLOSED), text)

    def retry(self) -> _Post:
        """The same segment on a fresh request, with what is still queued (moved to a new queue: the failed
        request's body may have left a waiter on the old one)."""
        queue: _Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        while not self.queue.empty():
            queue.put_nowait(self.queue.get_nowait())
        if self.ended:
            queue.put_nowait(None)
        return _Post(self.publisher, self.seq, reset=self.reset, queue=queue)

    async def cancel(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    async def connected_or_done(self) -> None:
        """Wait until the request has its connection or has ended."""
        connected = asyncio.ensure_future(self.connected.wait())
        try:
            await asyncio.wait({connected, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()


class SegmentWriter:
    """One segment being published; use as ``async with publisher.segment() as seg``."""

    def __init__(self, publisher: TricklePublisher, post: _Post) -> None:
        self.publisher = publisher
        self._post = post
        self.seq = post.seq
        self.size = 0
        self._retries = 0
        self._done = False

    @property
    def url(self) -> str:
        return f"{self.publisher.url}/{self.seq}"

    async def write(self, data: bytes) -> None:
        """Queue ``data`` for the segment's request body (waits while the request is behind)."""
        if self._done:
            raise TrickleError(f"{self.url}: the segment is already finished")
        if data:
            await self._put(bytes(data))
            self.size += len(data)

    async def close(self) -> None:
        """End the segment and wait for the server's answer; raises if it refused the segment."""
        if self._done:
            return
        await self._put(None)
        while True:
            await asyncio.wait({self._post.task})
            answer = await self._settle()
            if answer is not None:
                break
        self._done = True
        self._check(answer)
        self.publisher._succeeded()

    async def abandon(self) -> None:
        """Drop the segment: cancel its request and ask the server to close it (``DELETE {url}/{seq}``)."""
        if self._done:
            return
        self._done = True
        await self._post.cancel()
        await self.publisher._delete(self.url)

    async def _put(self, item: bytes | None) -> None:
        while True:
            put = asyncio.ensure_future(self._post.queue.put(item))
            await asyncio.wait({put, self._post.task}, return_when=asyncio.FIRST_COMPLETED)
            if put.done():
                return
            put.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await put
            answer = await self._settle()
            if answer is None:
                continue  # sent again on a fresh request
            # The server answered before the segment ended.
            self._done = True
            self._check(answer)
            raise SegmentCutOffError(f"{self.url}: the server ended the segment early (HTTP {answer.status})")

    async def _settle(self) -> _Answer | None:
        """The finished request's answer; None when it failed and was sent again (safe and retries left)."""
        try:
            return self._post.task.result()
        except (aiohttp.ClientError, OSError) as exc:
            if self._post.taken or self._retries >= self.publisher.max_retries:
                self._done = True
                self.publisher._failed()
                raise TrickleUnreachableError(f"{self.url}: {exc or type(exc).__name__}") from None
            self._retries += 1
            log_event(log, "trickle publish failed; retrying", logging.DEBUG, url=self.url, error=str(exc))
            await asyncio.sleep(self.publisher.retry_delay)
            self._post = self._post.retry()
            return None

    def _check(self, answer: _Answer) -> None:
        pub = self.publisher
        if answer.status == 404:
            pub._terminal = ChannelNotFoundError(f"{pub.url}: no such channel")
            raise pub._terminal
        if answer.closed:
            pub._terminal = ChannelClosedError(f"{pub.url}: the channel was closed")
            raise pub._terminal
        if answer.status == 413:
            raise SegmentTooLargeError(self.url, answer.status, answer.text)
        if answer.status != 200:
            pub._failed()
            raise TrickleHTTPError(self.url, answer.status, answer.text)

    async def __aenter__(self) -> SegmentWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abandon()


class TricklePublisher:
    """Publishes segments to one channel URL (``https://host:port/ai/trickle/{channel}``)."""

    def __init__(
        self,
        url: str,
        mime_type: str = DEFAULT_MIME_TYPE,
        *,
        start_seq: int = 0,
        session: aiohttp.ClientSession | None = None,
        verify_tls: TlsVerify = False,
        headers: Mapping[str, str] | None = None,
        max_retries: int = MAX_RETRIES,
        retry_delay: float = RETRY_DELAY,
        preconnect_max_age: float = PRECONNECT_MAX_AGE,
        connection_close: bool = False,
        delete_on_close: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.mime_type = mime_type
        self.seq = start_seq
        """The seq the next segment gets."""
        self.headers = dict(headers or {})
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.preconnect_max_age = preconnect_max_age
        self.connection_close = connection_close
        self.delete_on_close = delete_on_close
        self._verify_tls = verify_tls
        self._own_session = session is None
        self._session = session
        self._next: _Post | None = None
        self._reset_next = False
        self._failures = 0
        self._terminal: TrickleError | None = None
        self._requests: set[_Post] = set()
        """Every segment request started and not finished yet (the preconnect, a segment being written, a stale
        preconnect being cancelled): :meth:`close` ends them all before it closes the session."""

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._verify_tls)
        return self._session

    async def __aenter__(self) -> TricklePublisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Resolve ``start_seq=-1`` (``GET {url}/next``); otherwise nothing to do before the first segment."""
        if self.seq >= 0:
            return
        try:
            async with self.session.get(f"{self.url}/next", headers=self.headers) as resp:
                if resp.status == 404:
                    raise ChannelNotFoundError(f"{self.url}: no such channel")
                latest = int_header(resp.headers, LATEST)
                if resp.status != 200 or latest is None:
                    raise TrickleHTTPError(f"{self.url}/next", resp.status, await resp.text(errors="replace"))
        except aiohttp.ClientError as exc:
            raise TrickleUnreachableError(f"{self.url}/next: {exc or type(exc).__name__}") from None
        self.seq = latest
        self._reset_next = True

    async def create(self) -> None:
        """``POST {url}`` with ``Expect-Content``: make the channel on servers that allow it."""
        headers = {EXPECT_CONTENT.decode(): self.mime_type, **self.headers}
        try:
            async with self.session.post(self.url, headers=headers) as resp:
                if resp.status == 404:
                    raise ChannelNotFoundError(f"{self.url}: the server does not create channels on request")
                if resp.status != 200:
                    raise TrickleHTTPError(self.url, resp.status, await resp.text(errors="replace"))
        except aiohttp.ClientError as exc:
            raise TrickleUnreachableError(f"{self.url}: {exc or type(exc).__name__}") from None

    def segment(self) -> SegmentWriter:
        """The next segment: its preconnected request if there is a fresh one, and preconnect the one after."""
        if self._terminal is not None:
            raise self._terminal
        post = self._next
        self._next = None
        if post is not None and (post.seq != self.seq or time.monotonic() - post.opened > self.preconnect_max_age):
            post.task.cancel()
            post = None
        if post is None:
            post = _Post(self, self.seq, reset=self._reset_next)
        self._reset_next = False
        self.seq += 1
        self._next = _Post(self, self.seq)
        return SegmentWriter(self, post)

    async def write(self, data: bytes) -> int:
        """Publish ``data`` as one whole segment; its seq."""
        async with self.segment() as seg:
            await seg.write(data)
        return seg.seq

    def _succeeded(self) -> None:
        self._failures = 0

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self.max_retries and self._terminal is None:
            self._terminal = TrickleUnreachableError(f"{self.url}: {self._failures} segments in a row failed")

    async def _delete(self, url: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.session.delete(url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=5)):
                pass

    async def close(self) -> None:
        """Cancel every unfinished request (the preconnect, a segment still open), ``DELETE {url}`` (when
        ``delete_on_close``) and close the session."""
        posts = set(self._requests)
        if self._next is not None:
            posts.add(self._next)  # ended or not: its outcome is collected below
        self._next = None
        # A request cancelled while its connection is being made leaves asyncio a half-made transport (a TLS
        # one mid-handshake or already shutting down) that nothing closes once the loop stops: let such
        # connects finish (bounded), then cancel. A connected request's connection is the session's to end.
        connecting = [p.connected_or_done() for p in posts if not p.connected.is_set()]
        if connecting:
            await asyncio.wait([asyncio.ensure_future(c) for c in connecting], timeout=CLOSE_CONNECT_WAIT)
        for post in posts:
            await post.cancel()
        if self.delete_on_close and not isinstance(self._terminal, ChannelNotFoundError):
            await self._delete(self.url)  # also when nothing was published: the channel still ends
        if self._own_session and self._session is not None:
            await close_session(self._session)
            self._session = None
