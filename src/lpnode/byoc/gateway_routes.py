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
and no ``Livepeer-Payment``. Each request is recorded in the usage log with pipeline = capability name,
units = whole seconds charged and the orchestrator's price per second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lpnode.byoc.job_request import JOB_HEADER, JobRequest, decode_job_request, go_duration, normalize_url
from lpnode.byoc.ledger import seconds_charged
from lpnode.errors import JobError, PayloadTooLargeError, UnavailableError
from lpnode.gateway.api import error_response
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Outcome
from lpnode.gateway.key_guard import Admission
from lpnode.http_relay import RelayedStream, disconnected, first_of, release, when_sent
from lpnode.logs import log_event

log = logging.getLogger("lpnode.byoc.gateway")
SEARCH_TIMEOUT = 2.0
RESPONSE_TIMEOUT = 1.0
MAX_SEARCH_TIMEOUT = 30.0
EXTRA_SECONDS = 5
MAX_BODY_BYTES = 100 * 1024 * 1024
ZERO_ADDRESS = "0x" + "00" * 20
SEARCH_HEADER = "livepeer-orch-search-timeout"
RESPONSE_HEADER = "livepeer-orch-search-resp-timeout"
_PASSED = ("content-type", "content-length", "livepeer-balance", "x-metadata")

Recorder = Callable[[str, str, int, int, Outcome, float, str], None]
Admit = Callable[[str | None], Awaitable[Admission]]


@dataclass(frozen=True)
class JobToken:
    """One orchestrator's job token: where to send the job, its price (wei per second) and free capacity."""

    orchestrator: str
    service_addr: str
    price: Fraction
    available: int


class ByocGateway:
    def __init__(
        self,
        directory: Directory,
        session: aiohttp.ClientSession,
        *,
        record: Recorder | None = None,
        admit: Admit | None = None,
    ) -> None:
        self.directory = directory
        self.session = session
        self.record = record
        self.admit = admit

    def routes(self) -> list[Route]:
        return [
            Route("/process/request", self.handle, methods=["POST"]),
            Route("/process/request/{path:path}", self.handle, methods=["POST"]),
        ]

    async def handle(self, request: Request) -> Response:
        started = time.monotonic()
        request_id = secrets.token_hex(8)
        outcome = Outcome()
        capability = ""
        admission: Admission | None = None
        try:
            if self.admit is not None:
                admission = await self.admit(request.headers.get("authorization"))
                outcome.key_id, outcome.key_name = admission.key.id, admission.key.name
            job = decode_job_request(request.headers.get(JOB_HEADER))
            capability = job.capability
            search = _timeout(request.headers.get(SEARCH_HEADER), SEARCH_TIMEOUT, "Livepeer-Orch-Search-Timeout")
            each = _timeout(request.headers.get(RESPONSE_HEADER), RESPONSE_TIMEOUT, "Livepeer-Orch-Search-Resp-Timeout")
            body = await _read_body(request)
            response = await self._serve(request, job, body, min(each, search), search, outcome)
        except JobError as exc:
            refused_key = getattr(exc, "key", None)
            if refused_key is not None:
                outcome.key_id, outcome.key_name = refused_key.id, refused_key.name
            response = error_response(exc)
        except Exception as exc:  # a bug: log it whole, answer a 500 without a traceback
            log.exception("byoc request failed unexpectedly")
            response = error_response(JobError(f"internal error: {type(exc).__name__}"))

        def finish(status: int) -> None:
            if admission is not None:
                admission.release()
            if self.record is not None and capability:
                seconds = time.monotonic() - started
                units = seconds_charged(seconds) if outcome.orchestrator and status < 400 else 0
                self.record(capability, "", units, status, outcome, seconds, request_id)

        return when_sent(response, finish)

    async def _serve(
        self, request: Request, job: JobRequest, body: bytes, each: float, search: float, outcome: Outcome
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
        reasons = [f"{t.orchestrator}: no free capacity" for t in tokens if t.available <= 0]
        reasons += [f"{url}: {a}" for url, a in answers.items() if isinstance(a, str)]
        reasons += [f"{url}: no job token within {search:g}s" for url in orchestrators if url not in answers]
        header = job.encode(sender=ZERO_ADDRESS, sig="")
        sub_path = request.path_params.get("path", "")
        for token in usable:
            try:
                return await self._attempt(request, token, job, header, sub_path, body, outcome)
            except _NextOrchestrator as skip:
                reasons.append(f"{token.orchestrator}: {skip}")
        detail = "; ".join(reasons) if reasons else "no orchestrator offers it"
        raise UnavailableError(f"no orchestrator could serve capability {job.capability}: {detail}", 1)

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
        sender = base64.b64encode(json.dumps({"addr": ZERO_ADDRESS, "sig": ""}).encode()).decode()
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
        return JobToken(url, service, Fraction(per_unit, per or 1), available)

    async def _attempt(
        self,
        request: Request,
        token: JobToken,
        job: JobRequest,
        header: str,
        sub_path: str,
        body: bytes,
        outcome: Outcome,
    ) -> Response:
        headers = {"Livepeer": header, "Livepeer-Capability": job.capability}
        if request.headers.get("content-type"):
            headers["Content-Type"] = request.headers["content-type"]
        url = f"{token.service_addr}/process/request/{sub_path}".rstrip("/")
        timeout = aiohttp.ClientTimeout(total=job.timeout_seconds + EXTRA_SECONDS, sock_connect=5)
        done = asyncio.Event()
        done.set()
        call = self.session.post(url, data=body, headers=headers, timeout=timeout, ssl=False)
        try:
            upstream = await first_of(call, asyncio.Event(), disconnected(request, done))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _NextOrchestrator(f"no answer ({exc or type(exc).__name__})") from None
        if upstream.status >= 500:
            text = (await upstream.content.read(2000)).decode(errors="replace").strip()
            await release(upstream)
            raise _NextOrchestrator(f"answered {upstream.status}: {text or upstream.reason}")
        outcome.orchestrator = token.service_addr
        outcome.price = token.price
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED}
        passed["X-Orchestrator-Url"] = token.service_addr
        response = RelayedStream(_chunks(upstream, token.service_addr), status_code=upstream.status, headers=passed)

        async def close(status: int) -> None:
            await release(upstream)

        response.on_close = close
        return response


class _NextOrchestrator(Exception):
    """This orchestrator did not serve the job; try the next."""


def _service(info: Any) -> str:
    return str(info.transcoder) if info is not None and info.transcoder else ""


async def _chunks(upstream: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        log_event(log, "orchestrator answer broke off", logging.WARNING, url=url, problem=str(exc) or "timeout")


def _timeout(value: str | None, default: float, what: str) -> float:
    if value is None or not value.strip():
        return default
    return min(MAX_SEARCH_TIMEOUT, go_duration(value, what))


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    return bytes(body)
