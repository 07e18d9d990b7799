"""The gateway's BYOC route: ``POST /process/request/<sub/path>`` with a ``Livepeer`` header (go-livepeer's
``byoc`` gateway flow, off-chain).

1. The ``Livepeer`` header is decoded (400 for bad base64 or JSON, or no ``timeout_seconds``).
2. Every known orchestrator is asked for a job token (``GET /process/token``) at once; the search stops
   after ``Livepeer-Orch-Search-Timeout`` (default 2 s) and each answer may take
   ``Livepeer-Orch-Search-Resp-Timeout`` (default 1 s); both are Go durations (``500ms``) and are
   honoured (go-livepeer ignores them). Tokens with ``available_capacity > 0`` are kept, in the order
   they arrived; ``parameters.orchestrators.include``/``exclude`` narrow the list.
3. The job goes to each in turn (``POST <service_addr>/process/request/<sub/path>``, same body and
   ``Content-Type``, the ``Livepeer`` header re-encoded with this gateway as sender) with
   ``timeout_seconds + 5`` to answer. A 4xx goes back to the caller as it is; no answer or a 5xx moves
   on; when none is left the caller gets a 503 JSON error saying why (go-livepeer answers an empty 200).
4. The answer streams back (server-sent events included) with ``Livepeer-Balance``, ``X-Metadata`` and
   ``X-Orchestrator-Url``.

Off-chain the gateway has no Ethereum key: it sends the zero address as sender, without a signature,
and no ``Livepeer-Payment``. On chain it asks for tokens as its wallet (``{"addr", "sig"}``), signs each job
(``keccak256(request + parameters)``) and pays from the token's ticket params and price, as go-livepeer's
BYOC gateway does: no tickets while the orchestrator's ``balance`` covers 120 s at its price, else enough for
``timeout_seconds`` (:func:`lpnode.gateway.payments.byoc_tickets`); ``Livepeer-Balance`` from each answer is
kept per (orchestrator, capability) for status. Each request is recorded in the usage log with pipeline =
capability name, units = whole seconds charged and the orchestrator's price per second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import aiohttp
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lpnode.byoc.job_request import (
    JOB_HEADER,
    JobRequest,
    decode_job_request,
    go_duration,
    normalize_url,
    signed_message,
)
from lpnode.byoc.ledger import seconds_charged
from lpnode.errors import PayloadTooLargeError, UnavailableError
from lpnode.gateway.directory import Directory
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.request_body import SpooledBody
from lpnode.gateway.transport import AiohttpTransport, HopAnswer, HopError, HopRequest, OrchestratorTransport
from lpnode.gateway.tries import Retry, Tries
from lpnode.http_relay import RelayedStream, disconnected, first_of
from lpnode.logs import log_event
from lpnode.protocol.job_hop import PAYMENT_HEADER
from lpnode.protocol.lp_rpc_pb2 import PriceInfo, TicketParams

if TYPE_CHECKING:
    from lpnode.gateway.payments import GatewayPayments, Staged

log = logging.getLogger("lpnode.gateway.byoc")
SEARCH_TIMEOUT = 2.0
RESPONSE_TIMEOUT = 1.0
MAX_SEARCH_TIMEOUT = 30.0
EXTRA_SECONDS = 5
MAX_BODY_BYTES = 100 * 1024 * 1024
ERROR_TEXT_LIMIT = 2000
ZERO_ADDRESS = "0x" + "00" * 20
SEARCH_HEADER = "livepeer-orch-search-timeout"
RESPONSE_HEADER = "livepeer-orch-search-resp-timeout"
_PASSED = ("content-type", "content-length", "livepeer-balance", "x-metadata")


@dataclass(frozen=True)
class JobToken:
    """One orchestrator's job token: where to send the job, its price (wei per second) and free capacity."""

    orchestrator: str
    service_addr: str
    price: Fraction
    available: int
    price_info: PriceInfo | None = None  # as the token gave it: echoed exactly in a payment
    ticket_params: TicketParams | None = None  # on chain
    balance: Fraction = Fraction(0)  # what the orchestrator holds for this gateway and capability


class ByocGateway:
    def __init__(
        self,
        directory: Directory,
        session: aiohttp.ClientSession,
        wrapper: JobWrapper,
        transport: OrchestratorTransport | None = None,
        payments: GatewayPayments | None = None,
    ) -> None:
        self.directory = directory
        self.session = session
        self.wrapper = wrapper
        self.transport = transport or AiohttpTransport(session)
        self.payments = payments  # None: off-chain
        self.balances: dict[tuple[str, str], Fraction] = {}
        """(orchestrator, capability) -> the last ``Livepeer-Balance`` it reported (wei)."""

    def routes(self) -> list[Route]:
        return [
            Route("/process/request", self.handle, methods=["POST"]),
            Route("/process/request/{path:path}", self.handle, methods=["POST"]),
        ]

    async def handle(self, request: Request) -> Response:
        record = JobRecord(metered=False)  # metered once the request names its capability
        return await self.wrapper.serve(request, lambda job: self._handle(request, job), settle=_settle, job=record)

    async def _handle(self, request: Request, record: JobRecord) -> Response:
        job = decode_job_request(request.headers.get(JOB_HEADER))
        record.pipeline, record.metered = job.capability, True
        search = _timeout(request.headers.get(SEARCH_HEADER), SEARCH_TIMEOUT, "Livepeer-Orch-Search-Timeout")
        each = _timeout(request.headers.get(RESPONSE_HEADER), RESPONSE_TIMEOUT, "Livepeer-Orch-Search-Resp-Timeout")
        body = await _read_body(request)
        return await self._serve(request, job, body, min(each, search), search, record)

    async def _serve(
        self, request: Request, job: JobRequest, body: bytes, each: float, search: float, record: JobRecord
    ) -> Response:
        wanted = job.job_parameters()
        include, exclude = set(wanted.include), set(wanted.exclude)

        def allowed(*urls: str) -> bool:
            names = {normalize_url(u) for u in urls if u}
            return not (names & exclude) and (not include or bool(names & include))

        orchestrators = [o.url for o in self.directory.known() if allowed(o.url, _service(o.info))]
        if not orchestrators:
            reason = "none matches parameters.orchestrators" if include or exclude else "none is known"
            raise UnavailableError(f"no orchestrator for capability {job.capability}: {reason}")
        answers = await self._tokens(orchestrators, job.capability, each, search)
        tokens = [a for a in answers.values() if isinstance(a, JobToken)]
        usable = [t for t in tokens if t.available > 0 and allowed(t.orchestrator, t.service_addr)]
        header = self._job_header(job)
        sub_path = request.path_params.get("path", "")

        async def pick(tried: Collection[str]) -> JobToken | None:
            return next((t for t in usable if t.orchestrator not in tried), None)

        tries: Tries[JobToken] = Tries(f"serve capability {job.capability}", pick, lambda t: t.orchestrator)
        tries.limit = len(usable) + 1
        tries.reasons += [f"{t.orchestrator}: no free capacity" for t in tokens if t.available <= 0]
        tries.reasons += [f"{url}: {a}" for url, a in answers.items() if isinstance(a, str)]
        tries.reasons += [f"{url}: no job token within {search:g}s" for url in orchestrators if url not in answers]
        return await tries.run(lambda token: self._attempt(request, token, job, header, sub_path, body, record))

    def _job_header(self, job: JobRequest) -> str:
        """The ``Livepeer`` header sent on: this gateway as sender, signed on chain."""
        if self.payments is None:
            return job.encode(sender=ZERO_ADDRESS, sig="")
        sig = self.payments.sign(signed_message(job))
        return job.encode(sender=self.payments.checksum_address, sig="0x" + sig.hex())

    async def _tokens(
        self, orchestrators: Iterable[str], capability: str, each: float, search: float
    ) -> dict[str, JobToken | str]:
        """Each orchestrator's job token (or why it gave none), in the order they arrive, within ``search``
        seconds; orchestrators that did not answer by then are left out."""
        arrived: dict[str, JobToken | str] = {}

        async def fetch(url: str) -> None:
            arrived[url] = await self._token(url, capability, each)

        tasks = [asyncio.ensure_future(fetch(url)) for url in orchestrators]
        _, pending = await asyncio.wait(tasks, timeout=search)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return arrived

    async def _token(self, url: str, capability: str, timeout: float) -> JobToken | str:
        who = self.payments.address_header() if self.payments is not None else {"addr": ZERO_ADDRESS, "sig": ""}
        sender = base64.b64encode(json.dumps(who).encode()).decode()
        headers = {"Livepeer-Capability": capability, "Livepeer-Eth-Address": sender}
        try:
            async with self.session.get(
                f"{url}/process/token", headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
            ) as answer:
                if answer.status != 200:
                    text = (await answer.content.read(300)).decode(errors="replace").strip()
                    return f"no job token ({answer.status}: {text or answer.reason})"
                data = await answer.json(content_type=None)
        except TimeoutError:
            return f"no job token within {timeout:g}s"
        except (aiohttp.ClientError, ValueError) as exc:
            return f"no job token ({exc or type(exc).__name__})"
        if not isinstance(data, dict):
            return "the job token is not a JSON object"
        price = data.get("price") if isinstance(data.get("price"), dict) else {}
        assert isinstance(price, dict)
        try:
            per_unit, per = int(price.get("pricePerUnit") or 0), int(price.get("pixelsPerUnit") or 1)
            available = int(data.get("available_capacity") or 0)
        except (TypeError, ValueError):
            return "the job token's price or available_capacity is not a number"
        service = str(data.get("service_addr") or url).rstrip("/")
        try:
            price_info = json_format.ParseDict(price, PriceInfo(), ignore_unknown_fields=True)
            params = data.get("ticket_params")
            ticket_params = (
                json_format.ParseDict(params, TicketParams(), ignore_unknown_fields=True)
                if isinstance(params, dict) and params
                else None
            )
            balance = Fraction(str(data.get("balance") or 0))
        except (json_format.ParseError, ValueError, ZeroDivisionError):
            return "the job token's price, ticket_params or balance cannot be read"
        return JobToken(url, service, Fraction(per_unit, per or 1), available, price_info, ticket_params, balance)

    async def _attempt(
        self,
        request: Request,
        token: JobToken,
        job: JobRequest,
        header: str,
        sub_path: str,
        body: bytes,
        record: JobRecord,
    ) -> Response:
        headers = {"Livepeer": header, "Livepeer-Capability": job.capability}
        if request.headers.get("content-type"):
            headers["Content-Type"] = request.headers["content-type"]
        staged = await self._pay(token, job)
        if staged is not None:
            headers[PAYMENT_HEADER] = staged.header
        url = f"{token.service_addr}/process/request/{sub_path}".rstrip("/")
        deadline = time.monotonic() + job.timeout_seconds + EXTRA_SECONDS
        done = asyncio.Event()
        done.set()
        try:
            answer = await first_of(
                self.transport.send(HopRequest(url, body, headers, deadline)),
                asyncio.Event(),
                disconnected(request, done),
            )
            if answer.status >= 500:
                try:
                    text = (await answer.read(ERROR_TEXT_LIMIT)).decode(errors="replace").strip()
                except HopError:
                    text = ""
                finally:
                    await answer.close()
                raise Retry(f"answered {answer.status}: {text or 'no reason given'}")
        except HopError as exc:
            raise Retry(str(exc)) from None
        record.orchestrator = token.service_addr
        record.price = token.price
        reported = answer.headers.get("Livepeer-Balance")
        if reported:
            with contextlib.suppress(ValueError, ZeroDivisionError):
                self.balances[(token.orchestrator, job.capability)] = Fraction(reported)
        passed = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED}
        passed["X-Orchestrator-Url"] = token.service_addr
        response = RelayedStream(_chunks(answer, token.service_addr), status_code=answer.status, headers=passed)

        async def close(status: int) -> None:
            await answer.close()

        response.on_close = close
        return response

    async def _pay(self, token: JobToken, job: JobRequest) -> Staged | None:
        """On chain, for a priced capability: the payment the job carries (go-livepeer's BYOC rule)."""
        from lpnode.gateway.payments import SessionRefused, byoc_tickets

        payments = self.payments
        if payments is None or token.price <= 0 or token.ticket_params is None or token.price_info is None:
            return None
        self.balances[(token.orchestrator, job.capability)] = token.balance
        session = payments.byoc_session(token.orchestrator, job.capability, token.ticket_params, token.price_info)
        ev = payments.sender.expected_value(session.session_id) if session.session_id else Fraction(0)
        tickets = byoc_tickets(token.price, token.balance, job.timeout_seconds, ev)
        try:
            return await payments.pay_tickets(session, tickets)
        except SessionRefused as exc:
            raise Retry(f"cannot pay it: {exc}") from None


def _settle(job: JobRecord, status: int) -> None:
    """BYOC is charged per whole second of a served job; a refused or failed one costs nothing."""
    job.units = seconds_charged(job.seconds) if job.orchestrator and status < 400 else 0


def _service(info: Any) -> str:
    return str(info.transcoder) if info is not None and info.transcoder else ""


async def _chunks(answer: HopAnswer, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.chunks():
            yield chunk
    except HopError as exc:
        log_event(log, "orchestrator answer broke off", logging.WARNING, url=url, problem=str(exc))


def _timeout(value: str | None, default: float, what: str) -> float:
    if value is None or not value.strip():
        return default
    return min(MAX_SEARCH_TIMEOUT, go_duration(value, what))


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    too_large = f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB"
    # Streamed in and spooled to disk past 1 MiB: one copy in memory, and a 413 as soon as it passes the limit.
    body = await SpooledBody.read(request.stream(), MAX_BODY_BYTES, lambda: PayloadTooLargeError(too_large))
    try:
        return await body.whole()
    finally:
        body.close()
