"""The orchestrator's live video route: ``POST /live-video-to-video`` starts one stream on a live runner.

Checks run in go-livepeer's order and answer its status codes: a bad ``Livepeer-Payment`` is 402, bad
segment credentials 403, a body that is not a JSON object 400, no free live runner 503
``insufficient capacity``, a runner that fails to start the stream 500 (400 when it refused the params, as
the batch routes do). Error bodies are plain text.

A started stream gets a random manifest id ``mid`` and four trickle channels on this node's trickle
server (``/ai/trickle/``): ``{mid}`` (video in, ``video/MP2T``), ``{mid}-out`` (video out), ``{mid}-control``
and ``{mid}-events`` (``application/json``). The runner is told the channels from its side (it subscribes
to ``{mid}`` and publishes ``{mid}-out``); the gateway gets them from its side::

    {"publish_url": ".../{mid}", "subscribe_url": ".../{mid}-out", "control_url": ".../{mid}-control",
     "events_url": ".../{mid}-events", "manifest_id": "{mid}"}

The runner's lease (one unit of the model's capacity) is held for the stream's life. The stream ends, its
channels are deleted and the lease released, when the input channel is deleted (the gateway stopped) or
has had no segment for ``input_timeout`` seconds, when the runner reports ``IDLE`` again (its input ended)
or ``ERROR``, or when the runner is lost (it exited, and the pool restarts warm ones; an external runner that
misses 3 health checks in a row).

On chain the stream is paid (live-video.md §4.6): the payment sent with the start is processed for manifest
``mid`` (400 with go-livepeer's message; a priced stream needs a balance of one ticket's EV, 400
``Insufficient balance``); ``POST /payment`` (headers ``Livepeer-Payment`` and ``Livepeer-Segment`` naming
``mid``) credits it and answers a protobuf ``PaymentResult{info}`` with fresh ticket params; every
``-livePaymentInterval`` the stream is debited 27,648,000 units per second at its price, and a balance
that falls below zero ends the stream: an ``error`` event on ``{mid}-events`` says why (``{"type": "error",
"message": "... insufficient balance ...", "source": "orchestrator"}``), then its channels are closed, as
go-livepeer closes them. A stream is never served unpaid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lpnode.errors import BadRequestError, JobError, NotFoundError, PipelineFailedError, go_text_response
from lpnode.logs import log_event
from lpnode.orchestrator.credentials import Credentials, check_credentials
from lpnode.orchestrator.pool import LeasedRunner, RunnerPool
from lpnode.orchestrator.pool.health import probe
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.job_hop import error_message
from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo, PaymentResult, SegData
from lpnode.trickle import TrickleServer
from lpnode.trickle.channels import NEXT_SEQ

if TYPE_CHECKING:
    from lpnode.orchestrator.info import PriceBook
    from lpnode.orchestrator.payments import OrchestratorPayments, PaidJob

PaidInfo = Callable[[bytes, SegData], Awaitable[OrchestratorInfo]]
"""Fresh ``OrchestratorInfo`` (ticket params) for a paying sender, keeping its segment's auth token."""

log = logging.getLogger("lpnode.orchestrator.live")
PIPELINE = "live-video-to-video"
VIDEO_MIME = "video/MP2T"
JSON_MIME = "application/json"
MAX_BODY_BYTES = 1024 * 1024
CHANNEL_SUFFIXES = {"": VIDEO_MIME, "-out": VIDEO_MIME, "-control": JSON_MIME, "-events": JSON_MIME}
UNITS_PER_SECOND = 1280 * 720 * 30
"""go-livepeer bills a live stream as 720p at 30 fps, whatever it really is."""
NO_BALANCE = "insufficient balance"
EVENT_READ_GRACE = 0.5
"""Seconds a last event is left for the gateway to read before the channels are closed."""


@dataclass(frozen=True)
class LiveTimings:
    """The waits of a live stream, in seconds."""

    runner_start: float = 60.0
    """The runner must accept the stream within this."""
    poll: float = 1.0
    """How often the runner's health and the input channel are checked."""
    input_timeout: float = 60.0
    """No input segment for this long ends the stream (the runner gives up after 60 s too)."""
    busy_grace: float = 10.0
    """A runner still IDLE this long after accepting a stream never started it: the stream ends."""
    stop_wait: float = 10.0
    """After the channels are deleted, how long the runner may take to become IDLE before the lease ends."""
    unanswered_polls: int = 3
    """Health checks in a row the runner may miss before the stream is ended (an external runner that died)."""


@dataclass
class LiveStream:
    """One running stream, as ``/status`` shows it."""

    manifest_id: str
    model_id: str
    stream_id: str
    request_id: str
    runner: LeasedRunner
    started: float = field(default_factory=time.time)
    ended_by: str = ""
    task: asyncio.Task[None] | None = None
    paid: PaidJob | None = None
    accounted: float = field(default_factory=time.monotonic)
    """When the stream was last debited (monotonic)."""

    def view(self) -> dict[str, Any]:
        return {
            "manifest_id": self.manifest_id,
            "model_id": self.model_id,
            "stream_id": self.stream_id,
            "gateway_request_id": self.request_id,
            "runner": self.runner.name,
            "started": round(self.started, 3),
        }


class LiveRoute:
    """Serves ``POST /live-video-to-video`` and supervises the streams it started."""

    def __init__(
        self,
        pool: RunnerPool,
        trickle: TrickleServer,
        tokens: AuthTokens,
        capabilities: Callable[[], Capabilities],
        session: Callable[[], aiohttp.ClientSession],
        service_url: str,
        registry: CollectorRegistry,
        timings: LiveTimings | None = None,
    ) -> None:
        self.pool = pool
        self.trickle = trickle
        self.tokens = tokens
        self.capabilities = capabilities
        self.session = session
        self.service_url = service_url.rstrip("/")
        self.timings = timings or LiveTimings()
        self.streams: dict[str, LiveStream] = {}
        self.payments: OrchestratorPayments | None = None
        self.prices: PriceBook | None = None
        self.payment_interval = 5.0
        self.paid_info: PaidInfo | None = None
        self._starts = Counter(
            "lpnode_orchestrator_live_starts",
            "Live stream starts by model and HTTP status.",
            ["model_id", "status"],
            registry=registry,
        )
        self._running = Gauge(
            "lpnode_orchestrator_live_streams", "Live streams running now.", ["model_id"], registry=registry
        )

    def use_payments(
        self, payments: OrchestratorPayments, prices: PriceBook, interval: float, paid_info: PaidInfo
    ) -> None:
        """On chain: charge every stream from now on, every ``interval`` seconds."""
        self.payments, self.prices, self.payment_interval, self.paid_info = payments, prices, interval, paid_info

    def channel_url(self, name: str) -> str:
        return f"{self.service_url}/ai/trickle/{name}"

    async def handle(self, request: Request) -> Response:
        model_id = ""
        try:
            credentials = check_credentials(request.headers, self.tokens, self.capabilities, self.payments)
            body = await _read_body(request)
            model_id = str(body.get("model_id") or "") or self._only_model()
            response = await self._start(request, body, model_id, credentials)
        except JobError as exc:
            response = go_text_response(exc)
        except Exception as exc:  # a bug: log it whole, answer a plain 500 without a traceback
            log.exception("live stream start failed unexpectedly")
            response = go_text_response(PipelineFailedError(f"internal error: {type(exc).__name__}"))
        self._starts.labels(model_id=model_id, status=str(response.status_code)).inc()
        return response

    def _only_model(self) -> str:
        models = sorted(m for p, m in self.pool.snapshot() if p == PIPELINE)
        if len(models) == 1:
            return models[0]
        if not models:
            raise BadRequestError(f"{PIPELINE} is not served here")
        raise BadRequestError(f"model_id is required; {PIPELINE} models served here: {', '.join(models)}")

    async def _start(self, request: Request, body: dict[str, Any], model_id: str, credentials: Credentials) -> Response:
        stack = AsyncExitStack()
        mid = secrets.token_hex(4)
        try:
            deadline = time.monotonic() + self.timings.runner_start
            runner = await stack.enter_async_context(self.pool.lease(PIPELINE, model_id, deadline))
            paid = await self._take_payment(credentials, model_id, mid) if self.payments is not None else None
            for suffix, mime in CHANNEL_SUFFIXES.items():
                self.trickle.create_channel(mid + suffix, mime)
            stream = LiveStream(
                manifest_id=mid,
                model_id=model_id,
                stream_id=str(body.get("stream_id") or request.headers.get("streamid", "")),
                request_id=str(body.get("gateway_request_id") or request.headers.get("requestid", "")),
                runner=runner,
                paid=paid,
            )
            await self._call_runner(stream, body.get("params") or {})
        except BaseException:
            self._delete_channels(mid)
            await stack.aclose()
            raise
        self.streams[mid] = stream
        self._running.labels(model_id=model_id).inc()
        stream.task = asyncio.ensure_future(self._supervise(stream, stack))
        log_event(
            log, "live stream started", manifest_id=mid, model_id=model_id, stream_id=stream.stream_id,
            runner=runner.name,
        )  # fmt: skip
        return JSONResponse(
            {
                "publish_url": self.channel_url(mid),
                "subscribe_url": self.channel_url(mid + "-out"),
                "control_url": self.channel_url(mid + "-control"),
                "events_url": self.channel_url(mid + "-events"),
                "manifest_id": mid,
            }
        )

    async def _take_payment(self, credentials: Credentials, model_id: str, mid: str) -> PaidJob:
        assert self.payments is not None
        payment = credentials.payment
        sender = "0x" + bytes(payment.sender).hex() if payment.sender else ""
        advertised = self.prices.price(PIPELINE, model_id, sender) if self.prices is not None else None
        return await self.payments.take(payment, mid, advertised)

    def _account(self, stream: LiveStream) -> bool:
        """Debit the stream for the time since it was last debited, once a payment interval has passed;
        False when its balance is spent (the stream must end)."""
        if stream.paid is None or self.payments is None:
            return True
        now = time.monotonic()
        elapsed = now - stream.accounted
        if elapsed < self.payment_interval:
            return True
        stream.accounted = now
        seconds = Fraction(elapsed).limit_denominator(1000)
        balance = self.payments.settle(stream.paid, UNITS_PER_SECOND * seconds)
        return balance >= 0

    async def payment(self, request: Request) -> Response:
        """``POST /payment``: credit a running stream; answer ``PaymentResult{info}`` (protobuf)."""
        try:
            if self.payments is None or self.paid_info is None:
                raise NotFoundError("payments are off: this orchestrator is not on chain")
            credentials = check_credentials(request.headers, self.tokens, self.capabilities, self.payments)
            mid = bytes(credentials.segment.manifestId).decode(errors="replace")
            info = await self.paid_info(bytes(credentials.payment.sender), credentials.segment)
            await self.payments.process(credentials.payment, mid)
        except JobError as exc:
            return go_text_response(exc)
        return Response(PaymentResult(info=info).SerializeToString(), media_type="application/octet-stream")

    async def _call_runner(self, stream: LiveStream, params: Any) -> None:
        mid = stream.manifest_id
        payload = {
            "subscribe_url": self.channel_url(mid),
            "publish_url": self.channel_url(mid + "-out"),
            "control_url": self.channel_url(mid + "-control"),
            "events_url": self.channel_url(mid + "-events"),
            "model_id": stream.model_id,
            "params": params,
            "gateway_request_id": stream.request_id,
            "manifest_id": mid,
            "stream_id": stream.stream_id,
        }
        runner = stream.runner
        try:
            async with self.session().post(
                f"{runner.url}/{PIPELINE}",
                json=payload,
                headers=dict(runner.headers),
                timeout=aiohttp.ClientTimeout(total=self.timings.runner_start),
            ) as answer:
                if answer.status == 200:
                    return
                text = error_message(await answer.content.read(64 * 1024))
        except (aiohttp.ClientError, TimeoutError) as exc:
            text = str(exc) or type(exc).__name__
            raise PipelineFailedError(f"the live runner {runner.name} could not start the stream: {text}") from None
        if answer.status in (400, 422):  # the caller's params: no other runner or orchestrator would take them
            raise BadRequestError(f"the live runner refused the params: {text}")
        raise PipelineFailedError(f"the live runner {runner.name} refused the stream (HTTP {answer.status}): {text}")

    async def _supervise(self, stream: LiveStream, stack: AsyncExitStack) -> None:
        """Hold the lease until the stream ends, then delete its channels and release the lease."""
        reason = "stopped"
        try:
            reason = await self._until_ended(stream)
        except asyncio.CancelledError:
            reason = "orchestrator stopping"
            raise
        finally:
            stream.ended_by = reason
            try:
                if reason == "input channel deleted":
                    # The runner finishes the last input and closes its output; then the rest goes.
                    self.trickle.delete_channel(stream.manifest_id + "-control")
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._until_idle(stream)
                    self._delete_channels(stream.manifest_id)
                elif reason in ("runner error", NO_BALANCE) or reason.startswith("no input"):
                    if reason == NO_BALANCE and self._send_event(stream.manifest_id, _unpaid_event()):
                        with contextlib.suppress(asyncio.CancelledError):
                            await asyncio.sleep(EVENT_READ_GRACE)
                    self._delete_channels(stream.manifest_id)
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._until_idle(stream)
            finally:
                self._delete_channels(stream.manifest_id)
                await stack.aclose()
                self.streams.pop(stream.manifest_id, None)
                self._running.labels(model_id=stream.model_id).dec()
                log_event(
                    log, "live stream ended", manifest_id=stream.manifest_id, model_id=stream.model_id,
                    reason=reason, seconds=round(time.time() - stream.started, 1),
                )  # fmt: skip

    async def _until_ended(self, stream: LiveStream) -> str:
        t = self.timings
        busy_seen = False
        unanswered = 0
        accepted = time.monotonic()
        lost = asyncio.ensure_future(stream.runner.lost.wait())
        try:
            while True:
                await asyncio.wait({lost}, timeout=t.poll)
                if lost.done():
                    return "runner lost"
                channel = self.trickle.channels.get(stream.manifest_id)
                if channel is None or channel.closed:
                    return "input channel deleted"
                if channel.idle_for() > t.input_timeout:
                    return f"no input for {t.input_timeout:g}s"
                if not self._account(stream):
                    return NO_BALANCE
                health = await probe(self.session(), stream.runner.url, stream.runner.headers, t.poll * 5)
                if health.status == "ERROR":
                    return "runner error"
                unanswered = unanswered + 1 if health.status is None else 0
                if unanswered >= t.unanswered_polls:
                    return f"runner unreachable ({health.problem})"
                if health.status in ("OK", "LOADING"):
                    busy_seen = True
                elif health.status == "IDLE" and (busy_seen or time.monotonic() - accepted > t.busy_grace):
                    return "runner idle"
        finally:
            lost.cancel()

    async def _until_idle(self, stream: LiveStream) -> None:
        deadline = time.monotonic() + self.timings.stop_wait
        while time.monotonic() < deadline and not stream.runner.lost.is_set():
            health = await probe(self.session(), stream.runner.url, stream.runner.headers, self.timings.poll * 5)
            if health.status in ("IDLE", "ERROR", None):
                return
            await asyncio.sleep(min(0.25, self.timings.poll))

    def _send_event(self, mid: str, event: dict[str, Any]) -> bool:
        """Write ``event`` as the next segment of the stream's events channel; False when it is gone."""
        channel = self.trickle.channels.get(mid + "-events")
        if channel is None or channel.closed:
            return False
        segment = channel.for_write(NEXT_SEQ)
        channel.started(segment.seq)
        segment.write(json.dumps(event).encode())
        segment.close()
        return True

    def _delete_channels(self, mid: str) -> None:
        for suffix in CHANNEL_SUFFIXES:
            self.trickle.delete_channel(mid + suffix)

    def status(self) -> list[dict[str, Any]]:
        """The running streams, for ``/status``."""
        return [s.view() for s in self.streams.values()]

    async def close(self) -> None:
        """End every stream (channels deleted, leases released); bounded by the stop wait."""
        tasks = [s.task for s in self.streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _unpaid_event() -> dict[str, Any]:
    return {
        "type": "error",
        "source": "orchestrator",
        "message": f"the orchestrator stopped the stream: {NO_BALANCE} (its payments stopped)",
        "time": int(time.time() * 1000),
    }


async def _read_body(request: Request) -> dict[str, Any]:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise BadRequestError(f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(bytes(data) or b"{}")
    except ValueError as exc:
        raise BadRequestError(f"the body must be JSON (LiveVideoToVideoParams): {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object (LiveVideoToVideoParams)")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequestError("params must be a JSON object")
    return body
