"""The gateway's live streams: :class:`LiveSessions` (one per gateway, ``gateway.live``) and
:class:`LiveSession` (one stream), the interface every ingest and playback path uses.

    session = await gateway.live.start("my-stream", "noop", {"prompt": "a cat"})
    session.publish(ts_segment)            # one complete MPEG-TS segment starting at an IDR; never blocks
    async for segment in session.output(): # complete output MPEG-TS segments from the live edge on
        ...
    await session.update(b'{"prompt": "a dog"}')
    await session.stop()                   # stop() may also be called without await

A session starts on the first orchestrator that accepts it (:mod:`lpnode.gateway.live.orch_start`) and runs
its media loops there (:mod:`lpnode.gateway.live.media_loops`). When that orchestrator fails (a channel is
gone, no output for ``output_gap`` seconds while input is recent, no event for ``event_gap`` seconds) and
input is still arriving, the session moves to another orchestrator (a *swap*), at most ``max_swaps`` times
in ``swap_window`` seconds; the last params update is sent again after a swap. Output readers never notice
a swap except as a gap. The session ends when stopped, when no input arrived for ``input_timeout``
seconds, or when no orchestrator is left; its status stays readable for ``keep_ended`` seconds.

On chain, each orchestrator the stream runs on is paid while it serves (:mod:`lpnode.gateway.live.payment_loop`);
``gateway_status.payments`` shows the seconds paid, failed payments and the last failure's reason. An orchestrator
that stops a stream whose payments stopped says so in an ``error`` event (``"source": "orchestrator"``): it is
kept in ``errors`` as ``orchestrator: <message>``, and the stream moves on (or ends) as after any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from lpnode.errors import BadRequestError, UnavailableError
from lpnode.gateway.directory import Directory, Offer
from lpnode.gateway.live.media_loops import Attempt
from lpnode.gateway.live.orch_start import OrchestratorStarter, StartRequest
from lpnode.gateway.live.payment_loop import LivePayer
from lpnode.gateway.live.policy import LiveSettings, SwapBudget
from lpnode.gateway.live.ring import OutputRing, OutputSegment
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.settings import PriceCaps
from lpnode.logs import log_event
from lpnode.trickle import TrickleError, TrickleServer

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments

log = logging.getLogger("lpnode.gateway.live")
RECENT_ERRORS = 10
STARTING, RUNNING, SWAPPING, ENDED, FAILED = "starting", "running", "swapping", "ended", "failed"


class LiveSession:
    """One live stream through this gateway. Get one from :meth:`LiveSessions.start`."""

    def __init__(
        self, owner: LiveSessions, stream: str, model_id: str, params: dict[str, Any], stream_id: str = ""
    ) -> None:
        self.owner = owner
        self.settings = owner.settings
        self.stream = stream
        self.model_id = model_id
        self.params = params
        self.stream_id = stream_id or stream
        self.request_id = secrets.token_hex(4)
        self.state = STARTING
        self.ring = OutputRing(self.settings.ring_segments, self.settings.ring_bytes)
        self.attempt: Attempt | None = None
        self.offer: Offer | None = None
        self.payer: LivePayer | None = None  # on chain: pays the current orchestrator
        self.payments_view: dict[str, object] | None = None  # the last payer's, once it is gone
        self.swaps = SwapBudget(self.settings.max_swaps, self.settings.swap_window)
        self.swap_count = 0
        self.last_status: dict[str, Any] | None = None
        self.last_params: bytes | None = None
        self.input_segments = 0
        self.input_dropped = 0
        self.output_segments = 0
        self.errors: deque[tuple[float, str]] = deque(maxlen=RECENT_ERRORS)
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.ended_by = ""
        self._last_input = time.monotonic()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._failed_orchestrators: set[str] = set()
        self.authorization = ""
        """The ``Authorization`` header that started the stream (checked on its routes when keys are on)."""
        self._on_end: list[Callable[[], None]] = []
        self._on_event: list[Callable[[dict[str, Any]], None]] = []

    # --- the interface ---------------------------------------------------------------------------------

    def publish(self, segment: bytes) -> None:
        """Hand over one complete MPEG-TS input segment (starting at an IDR). Returns at once; the segment is
        dropped when ``max_in_flight`` segments are still being sent or no orchestrator is ready."""
        if self.ended:
            return
        self._last_input = time.monotonic()
        self.input_segments += 1
        attempt = self.attempt
        if attempt is None or not attempt.publish(segment):
            self.dropped()

    async def output(self) -> AsyncIterator[bytes]:
        """Complete output MPEG-TS segments from the live edge on, until the stream ends."""
        async for segment in self.ring.follow():
            yield segment

    async def output_bytes(self) -> AsyncIterator[bytes]:
        """The output MPEG-TS bytes from the live edge on, as they arrive, until the stream ends."""
        async for chunk in self.ring.follow_bytes():
            yield chunk

    async def update(self, params: bytes) -> None:
        """Send new params (one control message); they are kept and sent again after a swap. Raises
        :class:`BadRequestError` for a body that is not a JSON object."""
        try:
            parsed = json.loads(params)
        except ValueError as exc:
            raise BadRequestError(f"params must be JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequestError("params must be a JSON object")
        self.last_params = bytes(params)
        attempt = self.attempt
        if attempt is not None and not attempt.has_failed:
            try:
                await attempt.send_control(self.last_params)
            except TrickleError as exc:
                raise UnavailableError(f"could not send the params to the orchestrator: {exc}") from None

    def stop(self) -> asyncio.Task[None]:
        """End the stream (idempotent). The returned task may be awaited, or left to run."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop("stopped"))
        return self._stopping

    def on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the stream ends (at once if it has ended)."""
        if self.ended:
            callback()
        else:
            self._on_end.append(callback)

    def on_event(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener`` with each event the runner sends, as received, from now on."""
        self._on_event.append(listener)

    # --- state -----------------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state in (ENDED, FAILED)

    @property
    def last_input(self) -> float:
        return self._last_input

    def output_start(self) -> OutputSegment:
        self.output_segments += 1
        return self.ring.start()

    def dropped(self, count: int = 1) -> None:
        self.input_dropped += count

    def event(self, event: dict[str, Any]) -> None:
        for listener in self._on_event:
            listener(event)
        inner = event.get("event") if isinstance(event.get("event"), dict) else event
        assert isinstance(inner, dict)
        kind = inner.get("type")
        if kind == "status":
            previous = self.last_status or {}
            status = dict(inner)
            # The runner sends these once, then null: keep the last values (as go-livepeer's gateway does).
            inference = status.get("inference_status")
            old_inference = previous.get("inference_status")
            if isinstance(inference, dict) and isinstance(old_inference, dict):
                for key in ("last_params", "last_restart_logs"):
                    if inference.get(key) is None and old_inference.get(key) is not None:
                        inference[key] = old_inference[key]
            self.last_status = status
        elif kind == "error":
            source = "orchestrator" if inner.get("source") == "orchestrator" else "runner"
            self._error(f"{source}: {inner.get('message', '')}")

    def _error(self, text: str) -> None:
        self.errors.append((time.time(), text))

    def status(self) -> dict[str, Any]:
        """The last status event of the runner plus ``gateway_status`` (go-livepeer's ``/status`` body)."""
        body: dict[str, Any] = dict(self.last_status or {})
        attempt = self.attempt
        base = self.owner.public_url
        body["gateway_status"] = {
            "stream": self.stream,
            "stream_id": self.stream_id,
            "request_id": self.request_id,
            "pipeline": self.model_id,
            "state": self.state,
            "orchestrator": attempt.orchestrator if attempt is not None else "",
            "manifest_id": attempt.urls.manifest_id if attempt is not None else "",
            "swaps": self.swap_count,
            "input_segments": self.input_segments,
            "input_dropped": self.input_dropped,
            "output_segments": self.output_segments,
            "started_at": round(self.started_at, 3),
            "ended_at": round(self.ended_at, 3) if self.ended_at else None,
            "ended_by": self.ended_by,
            "last_error": self.errors[-1][1] if self.errors else "",
            "errors": [{"time": round(t, 3), "message": m} for t, m in self.errors],
            "whep_url": f"{base}/live/video-to-video/{self.stream}/whep" if base else "",
        }
        payments = self.payer.view() if self.payer is not None else self.payments_view
        if payments is not None:
            body["gateway_status"]["payments"] = payments
        return body

    # --- running ---------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        starter = self.owner.starter()
        job = StartRequest(self.model_id, self.params, self.stream_id, self.request_id)
        offer, urls = await starter.start(job, avoid=self._failed_orchestrators)
        attempt = Attempt(urls, self, self.settings)
        attempt.start()
        self.offer, self.attempt = offer, attempt
        owner = self.owner
        if owner.payments is not None and owner.directory is not None and owner.http is not None and urls.info:
            self.payer = LivePayer(
                owner.payments, owner.directory, owner.http, urls, self.model_id, owner.payment_interval
            )
            self.payer.start()
        self.owner.stats.started(offer)
        self.state = RUNNING
        log_event(
            log, "live stream on orchestrator", stream=self.stream, pipeline=self.model_id,
            orchestrator=offer.url, manifest_id=urls.manifest_id,
        )  # fmt: skip

    async def _release_attempt(self, drain: float = 0.0) -> None:
        attempt, offer = self.attempt, self.offer
        payer, self.payer = self.payer, None
        if payer is not None:
            await payer.close()
            self.payments_view = payer.view()
        if attempt is not None:
            await attempt.close(drain)
        if offer is not None:
            measure = self.owner.stats.of(offer)
            measure.in_flight = max(0, measure.in_flight - 1)
        self.offer = None

    async def _supervise(self) -> None:
        """Watch the current orchestrator; swap on failure; end on lost input or an empty swap budget."""
        try:
            while True:
                attempt = self.attempt
                assert attempt is not None
                reason = await self._failure_or_idle(attempt)
                if reason is None:
                    await self._finish(ENDED, f"no input for {self.settings.input_timeout:g}s")
                    return
                self._error(f"{attempt.orchestrator}: {reason}")
                self._failed_orchestrators.add(attempt.orchestrator)
                if self.owner.directory is not None:
                    self.owner.directory.suspend(attempt.orchestrator, f"live stream failed: {reason}")
                await self._release_attempt()
                if time.monotonic() - self._last_input > self.settings.output_gap:
                    await self._finish(ENDED, f"orchestrator failed after input stopped: {reason}")
                    return
                if not self.swaps.take():
                    await self._finish(
                        FAILED, f"{self.settings.max_swaps} swaps in {self.settings.swap_window:g}s used up: {reason}"
                    )
                    return
                self.swap_count += 1
                self.state = SWAPPING
                log_event(log, "live stream swapping orchestrator", logging.WARNING, stream=self.stream, reason=reason)
                try:
                    await self._connect()
                except (UnavailableError, BadRequestError) as exc:
                    self._error(exc.message)
                    await self._finish(FAILED, f"no orchestrator to swap to: {exc.message}")
                    return
                if self.last_params is not None and self.attempt is not None:
                    with contextlib.suppress(TrickleError):
                        await self.attempt.send_control(self.last_params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: end the stream cleanly rather than leave it half alive
            log.exception("live stream supervisor failed", extra={"fields": {"stream": self.stream}})
            await self._finish(FAILED, f"internal error: {type(exc).__name__}")

    async def _failure_or_idle(self, attempt: Attempt) -> str | None:
        """The attempt's failure, or None when input has been quiet for ``input_timeout``."""
        failure = asyncio.ensure_future(attempt.failed())
        try:
            while True:
                quiet = time.monotonic() - self._last_input
                left = self.settings.input_timeout - quiet
                if left <= 0:
                    return None
                done, _ = await asyncio.wait({failure}, timeout=left)
                if done:
                    return failure.result()
        finally:
            failure.cancel()

    async def _finish(self, state: str, why: str, drain: float = 0.0) -> None:
        await self._release_attempt(drain)
        if not self.ended:
            self.state = state
            self.ended_by = why
            self.ended_at = time.time()
            self.ring.close()
            self.owner._mark_ended(self)
            for callback in self._on_end:
                callback()
            self._on_end.clear()
            self._on_event.clear()
            log_event(
                log, "live stream ended", stream=self.stream, state=state, reason=why, swaps=self.swap_count,
                input_segments=self.input_segments, output_segments=self.output_segments,
            )  # fmt: skip

    async def _stop(self, why: str) -> None:
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._finish(ENDED, why, self.settings.stop_drain)


class LiveSessions:
    """Every live stream of one gateway, by stream name. Attached to the gateway's directory when it runs."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings.from_env()
        self.stats = Stats()
        self.public_url = ""
        self.directory: Directory | None = None
        self.payments: GatewayPayments | None = None  # on chain only
        self.payment_interval = 5.0
        self.http: aiohttp.ClientSession | None = None
        self._starter: OrchestratorStarter | None = None
        self._sessions: dict[str, LiveSession] = {}
        self._ended: dict[str, LiveSession] = {}
        self.trickle = TrickleServer()
        """Channels of streams started through ``POST /live-video-to-video`` (:mod:`.channel_api`)."""

    def attach(
        self,
        directory: Directory,
        selector: Selector,
        stats: Stats,
        caps: PriceCaps,
        session: aiohttp.ClientSession,
        public_url: str,
        *,
        payments: GatewayPayments | None = None,
        payment_interval: float = 5.0,
    ) -> None:
        """Use the running gateway's orchestrators (called once it has them); on chain, pay them with
        ``payments`` every ``payment_interval`` seconds."""
        self.directory = directory
        self.payments, self.payment_interval, self.http = payments, payment_interval, session
        self.stats = stats
        self.public_url = public_url.rstrip("/")
        self._starter = OrchestratorStarter(
            directory, selector, stats, caps, session, self.settings.start_timeout, self.settings.start_attempts,
            payments=payments,
        )  # fmt: skip

    def starter(self) -> OrchestratorStarter:
        if self._starter is None:
            raise UnavailableError("the gateway is not running yet; retry shortly")
        return self._starter

    async def start(self, stream: str, model_id: str, params: dict[str, Any], *, stream_id: str = "") -> LiveSession:
        """Start ``stream`` with live pipeline ``model_id`` on an orchestrator (a running stream of the same name
        is stopped first). Raises :class:`UnavailableError` (503) when no orchestrator starts it."""
        self._forget_old()
        old = self._sessions.get(stream)
        if old is not None:
            await old.stop()
        if len(self._sessions) >= self.settings.max_streams:
            raise UnavailableError(f"this gateway runs its maximum of {self.settings.max_streams} live streams", 5)
        session = LiveSession(self, stream, model_id, params, stream_id)
        self._sessions[stream] = session
        try:
            await session._connect()
        except BaseException:
            self._sessions.pop(stream, None)
            raise
        session._supervisor = asyncio.ensure_future(session._supervise())
        self._ended.pop(stream, None)
        return session

    def get(self, stream: str) -> LiveSession | None:
        """The running stream of that name, or one that ended less than ``keep_ended`` seconds ago."""
        self._forget_old()
        return self._sessions.get(stream) or self._ended.get(stream)

    def running(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def _mark_ended(self, session: LiveSession) -> None:
        if self._sessions.get(session.stream) is session:
            del self._sessions[session.stream]
            self._ended[session.stream] = session

    def _forget_old(self) -> None:
        now = time.time()
        for name, session in list(self._ended.items()):
            if session.ended_at is not None and now - session.ended_at > self.settings.keep_ended:
                del self._ended[name]

    async def close(self) -> None:
        """Stop every stream (bounded: each stop deletes two channels with a short timeout)."""
        await asyncio.gather(*(s.stop() for s in list(self._sessions.values())), return_exceptions=True)
        await self.trickle.close()
