"""The gateway paying through a remote signer (``-remoteSignerUrl``): no Ethereum key, flags or chain here.

:class:`SignerPayments` is the second implementation of the gateway's payments (beside the local wallet's
:class:`~lpnode.gateway.payments.GatewayPayments`), behind the same interface the directory, live starts and the
live payment loop use. What a caller may rely on:

- :meth:`SignerPayments.open` asks the signer for its address and signature (``POST /sign-orchestrator-info``,
  30 s) and raises :class:`~lpnode.errors.ConfigError` ``Unable to query remote signer: ...`` when it cannot:
  the gateway does not start. Every ``GetOrchestrator`` then carries that address and signature.
- A live start pays with ``POST /generate-live-payment`` type ``lv2v`` (the signer bills the first minute of
  720p30); the stream's payment loop pays every ``-livePaymentInterval`` with the stream's manifest id and the
  signer's state (:meth:`SignerPayments.live_payment`). 480 fetches fresh orchestrator info and asks again (at most
  3 times); 482 means nothing is due now; any other refusal is :class:`SignerRefusal` with the signer's status and
  message (481: the orchestrator's price is above one of the signer's ceilings).
- Runner apps: :meth:`SignerPayments.pay_challenge` turns an orchestrator's 402 challenge into the headers of a
  paid retry; a metered app's session is then kept funded by an :class:`AppFunding` until it ends.
- Discovery: :meth:`SignerPayments.discover` lists the orchestrators of ``GET /discover-orchestrators``.
- The signer's headers (``-remoteSignerHeaders``) go with every call to it and nowhere else; nothing secret is
  logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from lpnode.errors import ConfigError
from lpnode.gateway.directory import job_capabilities
from lpnode.gateway.payments import GatewayPayments, PaidSession, SessionRefused, Staged, price_of
from lpnode.logs import log_event
from lpnode.payments.sender import SenderBalances
from lpnode.protocol import remote_signer as wire
from lpnode.protocol import runner_apps as apps_wire
from lpnode.protocol.job_hop import PAYMENT_HEADER, SEGMENT_HEADER
from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, OrchestratorInfo, OrchestratorRequest

log = logging.getLogger("lpnode.gateway.remote_signer")
SIGN_INFO_TIMEOUT = 30.0
CALL_TIMEOUT = 10.0
DISCOVERY_TIMEOUT = 3.0
MAX_REFRESHES = 3
LIVE_PIPELINE = "live-video-to-video"
APP_PAYMENT_INTERVAL = 3.0
"""How often a metered runner-app session is paid (the SDK's 3 s: under the signer's 10 s opening credit)."""


def signer_url(text: str) -> str:
    """``-remoteSignerUrl`` as go reads it: ``https://`` put before a value without a scheme; the origin only.
    ConfigError ``Invalid remote signer URL: ...`` when there is no host."""
    value = text.strip()
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Invalid remote signer URL: {text!r}; give http://HOST:PORT (the signer serves plain HTTP)")
    return f"{parts.scheme}://{parts.netloc}"


def signer_headers(text: str) -> dict[str, str]:
    """``-remoteSignerHeaders 'k:v,k2:v2'``: split on ``,`` then the first ``:``, trimmed; empty keys dropped."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        key, _, value = item.partition(":")
        if key.strip():
            headers[key.strip()] = value.strip()
    return headers


class SignerRefusal(Exception):
    """The signer answered ``status`` with ``message``; ``orchestrator_url`` is set on a 480."""

    def __init__(self, status: int, message: str, orchestrator_url: str = "") -> None:
        super().__init__(f"remote signer returned status {status}: {message}")
        self.status = status
        self.message = message
        self.orchestrator_url = orchestrator_url


@dataclass
class _Counts:
    payments: int = 0
    refused: int = 0
    last_problem: str = ""
    by_status: dict[int, int] = field(default_factory=dict)


class SignerPayments(GatewayPayments):
    """Payments made by a remote signer (see the module docstring). Amounts the gateway keeps are the signer's:
    the state it returns carries the credit, so no balance is kept here."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        session: aiohttp.ClientSession,
        identity: wire.OrchestratorInfoSignature,
        *,
        owns_session: bool = False,
    ) -> None:
        # The local wallet's state is not used: everything it would hold lives in the signer.
        self.url = url
        self.headers = dict(headers)
        self.http = session
        self.identity = identity
        self.node = None
        self.balances = SenderBalances()
        self.sessions = {}  # type: ignore[assignment]
        self.sent = {}
        self.deposit = self.reserve = self.withdraw_round = 0
        self.counts = _Counts()
        self._owns_session = owns_session
        self._start_states: dict[tuple[str, str], list[wire.SignedState]] = {}
        self._stream_states: dict[str, wire.SignedState] = {}
        self._segments: dict[bytes, str] = {}

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str]) -> SignerPayments:
        """Ask the signer who it is; ConfigError ``Unable to query remote signer: ...`` when it does not say."""
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            body = await _call(session, "POST", url + wire.SIGN_ORCHESTRATOR_INFO, headers, {}, SIGN_INFO_TIMEOUT)
            identity = wire.OrchestratorInfoSignature.from_json(json.loads(body))
        except (SignerRefusal, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            await session.close()
            raise ConfigError(f"Unable to query remote signer: {exc or type(exc).__name__} ({url})") from None
        log_event(log, "gateway pays through a remote signer", signer=url, address=identity.address)
        return cls(url, headers, session, identity, owns_session=True)

    async def close(self) -> None:
        if self._owns_session:
            await self.http.close()

    # --- identity --------------------------------------------------------------------------------------------

    @property
    def address(self) -> bytes:
        return self.identity.address_bytes

    @property
    def checksum_address(self) -> str:
        return self.identity.address

    def orchestrator_request(self, capabilities: Capabilities | None = None) -> OrchestratorRequest:
        request = OrchestratorRequest(address=self.address, sig=self.identity.signature_bytes, ignoreCapacityCheck=True)
        if capabilities is not None:
            request.capabilities.CopyFrom(capabilities)
        return request

    def address_header(self) -> dict[str, str]:
        return {"addr": self.checksum_address, "sig": self.identity.signature}

    def sign(self, message: bytes) -> bytes:
        raise SessionRefused("a remote signer signs only payments: BYOC jobs need a gateway with its own key")

    def params_expired(self, info: OrchestratorInfo) -> bool:
        return False  # the signer says so (480) when it cannot pay with them

    async def funds_problem(self) -> str:
        return ""  # the signer's deposit: it refuses to pay when it cannot

    async def require_funds(self) -> None:
        return None

    # --- live video: the start -------------------------------------------------------------------------------

    def session(self, url: str, manifest_id: str, info: OrchestratorInfo) -> PaidSession:
        return PaidSession(url, manifest_id, info, "", price_of(info.price_info))

    def validate_price(self, session: PaidSession) -> None:
        return None  # the signer checks prices against its ceilings (481)

    async def pay(self, session: PaidSession, fee: Fraction) -> Staged:
        """A live start's payment: the signer bills the first minute (type ``lv2v``); ``fee`` is not used."""
        model_id = session.manifest_id.partition("_")[2]  # the start's manifest is <capability>_<model>
        caps = job_capabilities(LIVE_PIPELINE, model_id).SerializeToString()
        request = wire.PaymentRequest(session.info.SerializeToString(), type=wire.TYPE_LV2V, capabilities=caps)
        try:
            answer = await self.generate(request)
        except SignerRefusal as exc:
            raise SessionRefused(str(exc), refresh=exc.status == wire.STATUS_REFRESH_SESSION) from None
        self._start_states.setdefault((session.url, session.manifest_id), []).append(answer.state)
        self._segments[bytes(session.info.auth_token.token)] = answer.seg_creds
        return Staged(answer.payment, (session.recipient, session.manifest_id), Fraction(0), 0, Fraction(0),
                      Fraction(0), session.url, done=True)  # fmt: skip

    def segment(self, token: AuthToken, pipeline: str, model_id: str, manifest_id: str = "") -> str:
        """The signer's ``segCreds`` of the payment just made with ``token`` (the start's)."""
        return self._segments.pop(bytes(token.token), "")

    async def pay_tickets(self, session: PaidSession, num_tickets: int) -> Staged:
        raise SessionRefused("BYOC jobs are not paid through a remote signer: run the gateway with its own key")

    def forget_credit(self, key: tuple[bytes, str]) -> None:
        self._stream_states.pop(key[1], None)

    # --- live video: every interval -------------------------------------------------------------------------

    def take_start_state(self, url: str, start_manifest: str, stream_manifest: str) -> None:
        """The stream that started on ``url`` continues with its start's state, under its own manifest id."""
        held = self._start_states.get((url, start_manifest))
        if held:
            self._stream_states[stream_manifest] = held.pop(0)
            if not held:
                del self._start_states[(url, start_manifest)]

    async def live_payment(
        self, info: OrchestratorInfo, manifest_id: str, model_id: str
    ) -> wire.PaymentResponse | None:
        """A payment for the time a stream of ``model_id`` ran since its last one (None: nothing due, 482);
        SignerRefusal otherwise. The segment names the stream's capability, so the orchestrator prices it."""
        request = wire.PaymentRequest(
            info.SerializeToString(), type=wire.TYPE_LV2V, state=self._stream_states.get(manifest_id),
            manifest_id=manifest_id, capabilities=job_capabilities(LIVE_PIPELINE, model_id).SerializeToString(),
        )  # fmt: skip
        try:
            answer = await self.generate(request)
        except SignerRefusal as exc:
            if exc.status == wire.STATUS_NO_TICKETS:
                return None
            raise
        self._stream_states[manifest_id] = answer.state
        return answer

    # --- runner apps -----------------------------------------------------------------------------------------

    async def pay_challenge(
        self, challenge: dict[str, Any], app: str, unit: str, max_price: int | None = None, state: Any = None
    ) -> tuple[dict[str, str], wire.PaymentResponse]:
        """The headers of a paid retry for a 402 ``challenge`` of ``app`` priced in ``unit``."""
        params = base64.b64decode(str(challenge["payment_params"]))
        kind = apps_wire.SIGNER_TYPES.get(unit, wire.TYPE_LIVE)
        ceiling = None
        if max_price is not None and kind in wire.PRICE_UNITS:
            ceiling = wire.MaxPrice(str(max_price), "wei", wire.PRICE_UNITS[kind])
        answer = await self.generate(
            wire.PaymentRequest(params, type=kind, manifest_id=str(challenge["manifest_id"]), app=app,
                                max_price=ceiling, state=state)
        )  # fmt: skip
        headers = {
            PAYMENT_HEADER: answer.payment,
            SEGMENT_HEADER: answer.seg_creds,
            apps_wire.PAYER_HEADER: self.checksum_address,
        }
        return headers, answer

    # --- the signer's routes -----------------------------------------------------------------------------------

    async def generate(self, request: wire.PaymentRequest) -> wire.PaymentResponse:
        """``POST /generate-live-payment``; SignerRefusal with the signer's status and message."""
        try:
            body = await _call(
                self.http, "POST", self.url + wire.GENERATE_LIVE_PAYMENT, self.headers, request.to_json(), CALL_TIMEOUT
            )
            answer = wire.PaymentResponse.from_json(json.loads(body))
        except SignerRefusal as exc:
            self.counts.refused += 1
            self.counts.by_status[exc.status] = self.counts.by_status.get(exc.status, 0) + 1
            self.counts.last_problem = str(exc)
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.counts.refused += 1
            self.counts.last_problem = f"the remote signer did not answer: {exc or type(exc).__name__}"
            raise SignerRefusal(502, self.counts.last_problem) from None
        self.counts.payments += 1
        return answer

    async def discover(self) -> list[str] | None:
        """The orchestrators the signer lists (``GET /discover-orchestrators``); None when it cannot say (the
        last good list stays)."""
        try:
            body = await _call(self.http, "GET", self.url + wire.DISCOVER_ORCHESTRATORS, self.headers, None,
                               DISCOVERY_TIMEOUT)  # fmt: skip
            entries = json.loads(body)
        except (SignerRefusal, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log_event(log, "remote signer discovery failed", logging.WARNING, problem=str(exc) or type(exc).__name__)
            return None
        if not isinstance(entries, list):
            return None
        return [str(e["address"]).rstrip("/") for e in entries if isinstance(e, dict) and e.get("address")]

    def snapshot(self) -> dict[str, Any]:
        """For ``/status``: the signer, its address and what it was asked."""
        return {
            "remote_signer": self.url,
            "address": self.checksum_address,
            "signer_payments": self.counts.payments,
            "signer_refusals": self.counts.refused,
            "signer_refusals_by_status": {str(k): v for k, v in sorted(self.counts.by_status.items())},
            "last_problem": self.counts.last_problem,
        }


class AppFunding:
    """Keeps a metered runner-app session paid: a payment to ``payment_url`` every :data:`APP_PAYMENT_INTERVAL`
    seconds until :meth:`stop` (a 482 skips a round; the session's end, a 404 or another 4xx, stops it)."""

    def __init__(
        self,
        signer: SignerPayments,
        http: aiohttp.ClientSession,
        challenge: dict[str, Any],
        app: str,
        unit: str,
        state: wire.SignedState,
        interval: float = APP_PAYMENT_INTERVAL,
    ) -> None:
        self.signer = signer
        self.http = http
        self.challenge = dict(challenge)
        self.app = app
        self.unit = unit
        self.state = state
        self.interval = interval
        self.payments = 0
        self.problem = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    @property
    def running(self) -> bool:
        """Still paying (not stopped, and the session not found gone)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if not await self.pay_once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged; the orchestrator releases the session if it goes unpaid
                self.problem = str(exc) or type(exc).__name__
                log_event(log, "runner app payment failed", logging.WARNING, app=self.app, problem=self.problem)

    async def pay_once(self) -> bool:
        """One payment; False when the session is gone (stop paying)."""
        for _ in range(MAX_REFRESHES + 1):
            try:
                headers, answer = await self.signer.pay_challenge(self.challenge, self.app, self.unit, state=self.state)
            except SignerRefusal as exc:
                if exc.status == wire.STATUS_NO_TICKETS:
                    return True
                if exc.status == wire.STATUS_REFRESH_SESSION:
                    await self._refresh()
                    continue
                raise
            self.state = answer.state
            del headers[apps_wire.PAYER_HEADER]
            timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
            async with self.http.post(self.challenge["payment_url"], headers=headers, timeout=timeout, ssl=False) as r:
                text = (await r.content.read(2048)).decode(errors="replace").strip()
                if r.status == 200:
                    self.payments += 1
                    self.problem = ""
                    return True
                if 400 <= r.status < 500 and r.status not in (408, 429):
                    self.problem = f"{r.status}: {text}"
                    return False
                raise RuntimeError(f"{self.challenge['payment_url']} answered {r.status}: {text}")
        raise RuntimeError("the signer asked for fresh payment terms too many times")

    async def _refresh(self) -> None:
        origin = urlsplit(str(self.challenge["payment_url"]))
        url = f"{origin.scheme}://{origin.netloc}{apps_wire.REFRESH_PAYMENT_PATH}"
        body = {"sender": self.signer.checksum_address, "manifest_id": self.challenge["manifest_id"]}
        async with self.http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT), ssl=False) as r:
            if r.status != 200:
                raise RuntimeError(f"{url} answered {r.status}")
            fresh = await r.json(content_type=None)
        self.challenge["payment_params"] = fresh["payment_params"]


async def paid_app_request(
    signer: SignerPayments,
    http: aiohttp.ClientSession,
    send: Callable[[list[tuple[str, str]]], Awaitable[aiohttp.ClientResponse]],
    headers: list[tuple[str, str]],
    app: str,
    unit: str,
    max_price: int | None,
    *,
    funded: bool,
) -> tuple[aiohttp.ClientResponse, AppFunding | None]:
    """Send a runner-app request; on a 402 challenge, pay through the signer and send it once more. With
    ``funded`` and a metered unit, the answer comes with a started :class:`AppFunding`."""
    mine = [*headers, (apps_wire.PAYER_HEADER, signer.checksum_address)]
    first = await send(mine)
    if first.status != 402:
        return first, None
    try:
        challenge = await first.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return first, None
    finally:
        first.release()
    if not isinstance(challenge, dict) or not all(k in challenge for k in apps_wire.CHALLENGE_FIELDS):
        raise SignerRefusal(402, str((challenge or {}).get("error", challenge)) if isinstance(challenge, dict) else "")
    paid, answer = await signer.pay_challenge(challenge, app, unit, max_price)
    upstream = await send([*headers, *paid.items()])
    funding = None
    if funded and unit not in (apps_wire.UNIT_FIXED, "fixed") and upstream.status == 200:
        funding = AppFunding(signer, http, challenge, app, unit, answer.state)
        funding.start()
    return upstream, funding


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str], body: Any, timeout: float
) -> bytes:
    kwargs: dict[str, Any] = {"headers": {**headers, "Content-Type": "application/json"}}
    if body is not None:
        kwargs["data"] = json.dumps(body).encode()
    started = time.monotonic()
    async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False, **kwargs) as r:
        data = await r.content.read(4 * 1024 * 1024)
        if r.status != 200:
            raise SignerRefusal(
                r.status,
                wire.error_message(data) or f"HTTP {r.status}",
                r.headers.get(wire.ORCHESTRATOR_URL_HEADER, ""),
            )
    with contextlib.suppress(Exception):
        log_event(log, "remote signer call", logging.DEBUG, path=urlsplit(url).path,
                  ms=round((time.monotonic() - started) * 1000, 1))  # fmt: skip
    return data
