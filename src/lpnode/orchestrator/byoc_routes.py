"""The orchestrator's BYOC routes (go-livepeer ``byoc/``), and what it advertises for them.

- ``POST /capability/register``: ``Authorization: <orch secret>`` (the raw secret; anything else is 400
  ``invalid authorization``), body JSON ``ExternalCapability`` ``{"name", "description", "url", "capacity",
  "price_per_unit", "price_scaling", "currency", "token"}``. Registering a name again replaces it. 200 ``ok``.
- ``POST /capability/unregister``: same authorization, body = the capability's name. 200 ``ok``.
- ``GET /process/token``: header ``Livepeer-Capability: <name>`` (and optionally ``Livepeer-Eth-Address``);
  answers a JSON JobToken: ``sender_address``, ``balance``, ``price`` (wei per second), ``service_addr``,
  ``available_capacity``; zero fields are left out, as Go's ``omitempty`` does. Off-chain, no ticket params.
- ``POST /process/request/<sub/path>``: header ``Livepeer`` (see :mod:`lpnode.byoc.job_request`); the body
  streams to ``<target url>/<sub/path>`` and the answer streams back with ``Content-Type``, ``X-Metadata``
  and ``Livepeer-Balance``. A server-sent-events answer is relayed as it comes, with go-livepeer's
  ``data: {"balance": x}`` event added before the ``data: [DONE]`` line.

A job is charged ``price × ceil(seconds)``: for a whole answer, the seconds until the container's answer
starts (its body then streams); for an event stream, the seconds until ``[DONE]`` or its end.

Unsigned jobs: off-chain go-livepeer checks no signature at all. lpnode checks a ``sig`` when one is given
(a bad one is 400 ``Could not verify job creds``) and serves an unsigned job as sender ``""``; there is no
payment to take from anyone, so identity only labels the balance.

On chain (go-livepeer §8.2, §8.4) every job must be signed; the job token carries ``ticket_params`` for the
capability's price, the sender's ``balance`` and the ``price``. A priced job's ``Livepeer-Payment`` is
processed for manifest = the capability's name (400 with go's message), and the balance must then cover 60
seconds (400 ``Insufficient balance for request``). The job is charged as off-chain, from that balance.

Errors are plain text with go-livepeer's status codes: 400 bad header or credentials, 503 ``No capacity
available for capability`` (unknown, unhealthy or at capacity; with ``Retry-After``), the container's own
status and body for its errors, 503 when the container cannot be reached, 504 past ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.byoc.container import ContainerTarget
from lpnode.byoc.health import HEALTH_INTERVAL
from lpnode.byoc.job_request import JOB_HEADER, JobRequest, decode_job_request, verify_signature
from lpnode.byoc.ledger import Ledger, balance_text, seconds_charged
from lpnode.byoc.registry import CapabilityRegistry, Price, RegisteredCapability, TargetLease
from lpnode.errors import (
    BadRequestError,
    GatewayTimeoutError,
    JobError,
    PipelineFailedError,
    UnavailableError,
    go_text_response,
)
from lpnode.http_relay import RelayedStream, disconnected, first_of, release
from lpnode.logs import log_event
from lpnode.orchestrator.byoc_wire import address_bytes, ticket_params_json
from lpnode.protocol.job_hop import PAYMENT_HEADER, decode_payment
from lpnode.protocol.lp_rpc_pb2 import PriceInfo

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments

log = logging.getLogger("lpnode.byoc")
BALANCE_HEADER = "Livepeer-Balance"
PAYMENT_BALANCE_HEADER = "Livepeer-Payment-Balance"
ETH_ADDRESS_HEADER = "livepeer-eth-address"
MAX_REGISTRATION_BYTES = 64 * 1024
MAX_CAPACITY = 10_000
ERROR_BODY_LIMIT = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
_DONE = b"data: [DONE]"
PREPAID_SECONDS = 60
"""On chain a job needs a balance worth this many seconds at the capability's price (go-livepeer's rule)."""


class ByocOrchestrator:
    """The BYOC half of an orchestrator: its registry, balances and routes."""

    def __init__(
        self,
        secret: str,
        service_url: str,
        session: Callable[[], aiohttp.ClientSession],
        *,
        health_interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.secret = secret
        self.service_url = service_url.rstrip("/")
        self.session = session
        self.health_interval = health_interval
        self.registry = CapabilityRegistry()
        self.ledger = Ledger()
        self.payments: OrchestratorPayments | None = None
        """On chain only: balances come from tickets instead of the off-chain ledger."""

    def routes(self) -> list[Route]:
        return [
            Route("/capability/register", self.register, methods=["POST"]),
            Route("/capability/unregister", self.unregister, methods=["POST"]),
            Route("/process/token", self.token, methods=["GET"]),
            Route("/process/request", self.process, methods=["POST"]),
            Route("/process/request/{path:path}", self.process, methods=["POST"]),
        ]

    def capabilities_prices(self) -> list[PriceInfo]:
        """``OrchestratorInfo.capabilities_prices`` entries of the healthy capabilities."""
        return self.registry.advertised()

    def status(self) -> list[dict[str, Any]]:
        return self.registry.status()

    async def close(self) -> None:
        await self.registry.close()

    # --- registration ----------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return bool(self.secret) and hmac.compare_digest(given.encode(), self.secret.encode())

    async def register(self, request: Request) -> Response:
        if not self._authorized(request):
            return _refused(self.secret)
        try:
            capability = self._parse_registration(await _small_body(request))
        except BadRequestError as exc:
            return PlainTextResponse(f"Error registering capability: {exc.message}\n", status_code=400)
        await self.registry.register(capability)
        return PlainTextResponse("ok")

    async def unregister(self, request: Request) -> Response:
        if not self._authorized(request):
            return _refused(self.secret)
        try:
            name = (await _small_body(request)).decode(errors="replace").strip()
        except BadRequestError as exc:
            return go_text_response(exc)
        if not await self.registry.unregister(name):
            log_event(log, "unregister of a capability not registered", logging.WARNING, name=name)
        return PlainTextResponse("ok")

    def _parse_registration(self, body: bytes) -> RegisteredCapability:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"the body must be JSON (an ExternalCapability): {exc}") from None
        if not isinstance(data, dict):
            raise BadRequestError("the body must be a JSON object (an ExternalCapability)")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BadRequestError(
                f"name must be 1-128 letters, digits or ._:@+- (starting with a letter or digit), got {name!r}"
            )
        url = data.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequestError(f"url must be the container's http(s)://host:port address, got {url!r}")
        capacity = data.get("capacity", 1)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
            raise BadRequestError(f"capacity must be a whole number from 1 to {MAX_CAPACITY}, got {capacity!r}")
        for text_field in ("description", "currency", "token"):
            if not isinstance(data.get(text_field, ""), str):
                raise BadRequestError(f"{text_field} must be a string")
        price = Price(
            per_unit=data.get("price_per_unit", 0),
            scaling=data.get("price_scaling", 1) or 1,
            currency=data.get("currency", "") or "wei",
        ).check(self.registry.wei_per)
        assert isinstance(url, str)
        target = ContainerTarget(
            name, url, capacity, self.session, token=data.get("token", ""), interval=self.health_interval
        )
        return RegisteredCapability(name, data.get("description", ""), price, target)

    # --- job tokens -------------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        try:
            sender = _eth_address(request.headers.get(ETH_ADDRESS_HEADER, ""))
        except BadRequestError as exc:
            return go_text_response(exc)
        name = request.headers.get("livepeer-capability", "").strip()
        if not name:
            return PlainTextResponse("missing Livepeer-Capability header; name the capability\n", status_code=400)
        capability = self.registry.get(name)
        if capability is None:
            return PlainTextResponse(f"capability {name!r} is not registered here\n", status_code=404)
        price = capability.price_info()
        token: dict[str, Any] = {}
        if sender:
            token["sender_address"] = sender
        balance = int(balance_text(self._balance(sender.get("addr", ""), name)))
        if balance:
            token["balance"] = balance
        if self.payments is not None and sender:
            address = address_bytes(sender.get("addr", ""))
            if not self.payments.verify_address(address, sender.get("sig", "")):
                return PlainTextResponse("ErrSegSig\n", status_code=400)  # go-livepeer's words for a bad sig
            token["ticket_params"] = ticket_params_json(await self.payments.ticket_params(address, price))
        token["price"] = {
            k: v for k, v in (("pricePerUnit", price.pricePerUnit), ("pixelsPerUnit", price.pixelsPerUnit)) if v
        }
        token["service_addr"] = self.service_url
        if capability.available():
            token["available_capacity"] = capability.available()
        return JSONResponse(token)

    # --- jobs -------------------------------------------------------------------------------------------

    async def process(self, request: Request) -> Response:
        started = time.monotonic()
        stack = AsyncExitStack()
        job: JobRequest | None = None
        try:
            job = decode_job_request(request.headers.get(JOB_HEADER))
            if self.payments is not None and not job.sig:
                raise BadRequestError("Could not verify job creds: on chain a job must be signed by its sender")
            verify_signature(job)
            capability = self.registry.get(job.capability)
            if capability is None:
                raise UnavailableError(
                    f"No capacity available for capability {job.capability}: it is not registered here"
                )
            lease = await stack.enter_async_context(capability.target.lease(started + job.timeout_seconds))
            if self.payments is not None:
                await self._take_payment(request, job, capability.price.wei_per_second)
            response = await self._relay(request, job, capability, lease, started, stack)
        except TimeoutError:
            seconds = job.timeout_seconds if job is not None else 0
            response = go_text_response(GatewayTimeoutError(f"the job did not answer within {seconds}s"))
        except JobError as exc:
            response = go_text_response(exc)
        except Exception as exc:  # a bug: log it whole, answer a plain 500 without a traceback
            log.exception("byoc job failed unexpectedly")
            response = go_text_response(PipelineFailedError(f"internal error: {type(exc).__name__}"))

        async def finish(status: int) -> None:
            await stack.aclose()
            log_event(
                log, "byoc job", capability=job.capability if job else "-", status=status,
                seconds=round(time.monotonic() - started, 3),
            )  # fmt: skip

        if isinstance(response, RelayedStream):
            response.on_close = finish
        else:
            await finish(response.status_code)
        return response

    def _balance(self, sender: str, capability: str) -> Fraction:
        if self.payments is None:
            return self.ledger.balance(sender, capability)
        return self.payments.balance(address_bytes(sender), capability) if sender else Fraction(0)

    def _debit(self, sender: str, capability: str, amount: Fraction) -> Fraction:
        if self.payments is None:
            return self.ledger.debit(sender, capability, amount)
        return self.payments.debit(address_bytes(sender), capability, Fraction(1), amount)

    async def _take_payment(self, request: Request, job: JobRequest, price: Fraction) -> None:
        """On chain: process the job's payment (if priced) and require 60 seconds of balance."""
        assert self.payments is not None
        if price <= 0:
            return
        sender = address_bytes(job.sender)
        payment = decode_payment(request.headers.get(PAYMENT_HEADER.lower(), ""))
        if payment.ticket_sender_params:
            if bytes(payment.sender) != sender:
                raise BadRequestError("Could not verify job creds: the payment's sender is not the job's")
            await self.payments.process(payment, job.capability)
        if self.payments.balance(sender, job.capability) < PREPAID_SECONDS * price:
            raise BadRequestError("Insufficient balance for request")

    async def _relay(
        self,
        request: Request,
        job: JobRequest,
        capability: RegisteredCapability,
        lease: TargetLease,
        started: float,
        stack: AsyncExitStack,
    ) -> Response:
        sub_path = request.path_params.get("path", "").lstrip("/") or lease.default_path
        url = f"{lease.url}/{sub_path}" if sub_path else lease.url
        headers = {**lease.headers}
        if request.headers.get("content-type"):
            headers["Content-Type"] = request.headers["content-type"]
        length = request.headers.get("content-length")
        if length and "transfer-encoding" not in request.headers:
            headers["Content-Length"] = length
        done = asyncio.Event()
        call = self.session().post(
            url,
            data=_until_done(request.stream(), done),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=job.timeout_seconds, sock_connect=5),
            ssl=False,
        )
        try:
            upstream = await first_of(call, asyncio.Event(), disconnected(request, done))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            capability.target.unreachable(f"cannot reach {lease.url}: {exc}")
            raise UnavailableError(f"the container of capability {job.capability} cannot be reached; retry") from None
        except TimeoutError:  # past timeout_seconds: the container worked all along, so it is charged; 504
            seconds = seconds_charged(time.monotonic() - started)
            self._debit(job.sender, job.capability, capability.price.wei_per_second * seconds)
            raise
        except aiohttp.ClientError as exc:
            raise PipelineFailedError(
                f"the container of capability {job.capability} failed: {exc or type(exc).__name__}"
            ) from None
        price = capability.price.wei_per_second
        charged: list[Fraction] = []

        def charge() -> Fraction:
            """Debit this job once, for the seconds so far; the balance after it."""
            if not charged:
                seconds = seconds_charged(time.monotonic() - started)
                charged.append(self._debit(job.sender, job.capability, price * seconds))
            return charged[0]

        async def settle() -> None:  # when the answer is sent, however it ends
            await release(upstream)
            charge()

        stack.push_async_callback(settle)
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "x-metadata")}
        if upstream.status > 399:
            error = await upstream.content.read(ERROR_BODY_LIMIT)
            passed[BALANCE_HEADER] = balance_text(charge())
            return Response(error, status_code=upstream.status, headers=passed)
        if upstream.content_type == "text/event-stream":
            balance = self._balance(job.sender, job.capability)
            passed[BALANCE_HEADER] = passed[PAYMENT_BALANCE_HEADER] = balance_text(balance)
            passed["Cache-Control"] = "no-cache"
            stream = RelayedStream(_events(upstream, charge), status_code=upstream.status, headers=passed)
        else:
            passed[BALANCE_HEADER] = balance_text(charge())
            if upstream.headers.get("content-length") and "content-encoding" not in upstream.headers:
                passed["Content-Length"] = upstream.headers["content-length"]
            stream = RelayedStream(_body(upstream), status_code=upstream.status, headers=passed)
        return stream


def _refused(secret: str) -> Response:
    hint = "" if secret else " (this orchestrator has no --orch-secret, so BYOC registration is off)"
    return PlainTextResponse(f"invalid authorization{hint}\n", status_code=400)


async def _small_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REGISTRATION_BYTES:
            raise BadRequestError("the body is too large")
    return body


def _eth_address(value: str) -> dict[str, str]:
    """``Livepeer-Eth-Address``: base64 JSON ``{"addr", "sig"}``; {} when absent."""
    if not value:
        return {}
    try:
        text = value.strip().replace("-", "+").replace("_", "/")
        data = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequestError(
            'could not decode Livepeer-Eth-Address; send base64 JSON {"addr": "0x..", "sig": ".."}'
        ) from None
    if not isinstance(data, dict):
        raise BadRequestError('Livepeer-Eth-Address must hold a JSON object {"addr": "0x..", "sig": ".."}')
    return {k: str(data[k]) for k in ("addr", "sig") if data.get(k)}


async def _until_done(chunks: AsyncIterator[bytes], done: asyncio.Event) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if chunk:
            yield chunk
    done.set()


async def _body(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:  # the container failed mid-answer: a cut-off body
        log_event(log, "byoc container failed while answering", logging.WARNING, problem=str(exc) or "timeout")


async def _events(upstream: aiohttp.ClientResponse, charge: Callable[[], Fraction]) -> AsyncIterator[bytes]:
    """The container's event stream, with ``data: {"balance": x}`` added before its ``data: [DONE]`` line."""
    pending = b""
    async for chunk in _body(upstream):
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        whole, pending = data[:cut], data[cut:]
        if _DONE not in whole:
            if whole:
                yield whole
            continue
        out = bytearray()
        for line in whole.splitlines(keepends=True):
            if line.rstrip(b"\r\n") == _DONE:
                out += f'data: {{"balance": {_three_places(charge())}}}\n\n'.encode()
            out += line
        yield bytes(out)
    if pending:
        yield pending


def _three_places(balance: Fraction) -> str:
    thousandths = balance.numerator * 1000 // balance.denominator
    return str(Decimal(thousandths).scaleb(-3))
