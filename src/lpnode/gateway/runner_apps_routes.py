"""The gateway's routes to runner apps: any app, by name, through whichever orchestrator lists it.

The shapes are the orchestrator's (go-livepeer's Live Runner), with the app's name where the orchestrator has a
runner ID, so the ``livepeer-gateway`` SDK pointed at the gateway's ``/discovery`` calls apps through it. An app
name with slashes (``text-to-image/lpnode/tiny-text-to-image``) is written as it is, or percent-encoded as one
segment.

- ``GET /discovery``: ``[{"address": <gateway>, "runners": [...]}]``, one runner per app name and mode, its
  ``url`` on the gateway and its capacity summed over the orchestrators listing it (``runners`` left out when
  there are none, as go-livepeer does).
- ``ANY /apps/<app>/app/<path>``: a single-shot call, HTTP (SSE streamed) or WebSocket. The body is read once
  and the call tried on the app's instances in the selector's order: one at capacity (503), gone (404 ``runner
  not found``) or failing (502, no answer) moves to the next; any other answer is the app's and goes back as it
  is. None left: 503; an app no orchestrator lists: 404; a persistent app: 400.
- ``POST /apps/<app>/session``: reserves a persistent session on one instance: ``{"session_id", "app_url",
  "control_url"}``, both URLs on the gateway. ``ANY <app_url>/<path>`` (HTTP or WebSocket) reaches the session's
  app, ``POST <control_url>/stop`` ends it. A session belongs to the API key that reserved it: another key gets
  404, as an unknown session does. Sessions are kept in the gateway's state
  (:mod:`lpnode.gateway.runner_apps_sessions`): every replica on one ``--db-url`` knows them.

Every route but ``/discovery`` is a metered job (:mod:`lpnode.gateway.job_wrapper`): the API key's admission,
errors in the gateway's JSON dialect, and one usage row per call with pipeline ``app:<name>``, the orchestrator,
and the app's model for an lpnode pipeline's app (units 0: runner apps are not priced yet). A WebSocket is
admitted with its ``Authorization`` header (a refused one is closed before it opens) and recorded when it ends,
with status 101.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import aiohttp
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from lpnode.errors import (
    BadRequestError,
    JobError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PipelineFailedError,
    UnavailableError,
    gateway_json_response,
)
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.request_body import SpooledBody
from lpnode.gateway.runner_apps import APP_PIPELINE_PREFIX, AppDirectory, AppOffer
from lpnode.gateway.runner_apps_jobs import GONE_MESSAGES
from lpnode.gateway.runner_apps_proxy import relayed, request_headers
from lpnode.gateway.runner_apps_sessions import AppSessions
from lpnode.gateway.selection import Selector, Stats
from lpnode.gateway.state import AppSessionRecord, GatewayState
from lpnode.gateway.tries import BUSY_RETRY, Retry, Tries
from lpnode.http_relay import pump_websocket, release, websocket_url
from lpnode.logs import log_event
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.asgi import Receive, Scope, Send
from lpnode.protocol.job_hop import ERROR_BODY_LIMIT, answer_error, error_message

if TYPE_CHECKING:
    from lpnode.gateway.remote_signer import AppFunding, SignerPayments

log = logging.getLogger("lpnode.gateway.runner_apps")
MAX_BODY_BYTES = 100 * 1024 * 1024
_NO_AUTO = ("User-Agent", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class _Target:
    app: str
    action: str  # "app", "reserve", "session-app" or "stop"
    session_id: str = ""
    path: str = ""  # below the app, as sent (still percent-encoded): "" or "/..."


class AppRoutes:
    """``/discovery`` and ``/apps/...`` on the gateway's public port (:meth:`routes`)."""

    def __init__(
        self,
        apps: AppDirectory,
        selector: Selector,
        stats: Stats,
        session: aiohttp.ClientSession,
        wrapper: JobWrapper,
        public_url: str,
        state: GatewayState,
        *,
        timeout: float,
    ) -> None:
        self.apps = apps
        self.selector = selector
        self.stats = stats
        self.session = session
        self.wrapper = wrapper
        self.public_url = public_url.rstrip("/")
        self.timeout = timeout
        """Seconds an app's orchestrator has to start answering (the answer itself may stream for longer)."""
        self.sessions = AppSessions(state)
        self.signer: SignerPayments | None = None
        """Set when the gateway pays through a remote signer: apps answering 402 are paid through it."""

    def routes(self) -> list[BaseRoute]:
        return [Route(wire.DISCOVERY_PATH, self.discovery, methods=["GET"]), Mount(wire.APPS_PREFIX, app=self)]

    # --- discovery -----------------------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        if self.wrapper.admit is not None:
            try:
                (await self.wrapper.admit(request.headers.get("authorization"))).release()
            except JobError as exc:
                return gateway_json_response(exc)
        grouped: dict[tuple[str, str], list[AppOffer]] = {}
        for offer in self.apps.listed():
            grouped.setdefault((offer.app, offer.mode), []).append(offer)
        runners = []
        for (app, mode), offers in sorted(grouped.items()):
            tail = "app" if mode == wire.MODE_SINGLE_SHOT else "session"
            capacity, used = sum(o.capacity for o in offers), sum(o.capacity_used for o in offers)
            entry: dict[str, object] = {"url": f"{self.public_url}/apps/{quote(app, safe='/')}/{tail}", "app": app}
            if offers[0].version:
                entry["version"] = offers[0].version
            if offers[0].metadata:
                entry["metadata"] = offers[0].metadata
            entry |= {"mode": mode, "capacity": capacity, "capacity_used": used, "capacity_available": capacity - used}
            runners.append(entry)
        return JSONResponse([{"address": self.public_url, **({"runners": runners} if runners else {})}])

    # --- ASGI: /apps/... -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        job = JobRecord(pipeline=APP_PIPELINE_PREFIX)
        response = await self.wrapper.serve(request, lambda job: self._http(request, job), job=job)
        await response(scope, receive, send)

    async def _http(self, request: Request, job: JobRecord) -> Response:
        target = await self._target(request.scope, job)
        if target.action == "app":
            return await self._single_shot(request, target, job)
        if target.action == "session-app":
            return await self._session_call(request, target, job)
        if request.method != "POST":
            raise MethodNotAllowedError(f"{request.url.path} takes POST")
        if target.action == "reserve":
            return await self._reserve(target, job)
        return await self._stop(target, job)

    async def _target(self, scope: Scope, job: JobRecord) -> _Target:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        rest = raw.split(b"?", 1)[0].decode("latin-1").removeprefix(wire.APPS_PREFIX + "/")
        target = self._parse(rest)
        if target is None:
            await self.apps.refresh()  # a new app may have joined since the last refresh
            target = self._parse(rest) or await self._parse_session(rest)
        if target is None:
            name = _guess_name(rest)
            job.pipeline = APP_PIPELINE_PREFIX + name
            raise NotFoundError(f'no orchestrator offers the app "{name}"; GET /discovery lists the apps on offer')
        job.pipeline = APP_PIPELINE_PREFIX + target.app
        return target

    def _parse(self, rest: str, known: Collection[str] = ()) -> _Target | None:
        raw_parts = rest.split("/")
        parts = [unquote(p) for p in raw_parts]
        known = known or self.apps.names()

        def below(index: int) -> str:
            return "/" + "/".join(raw_parts[index:]) if len(raw_parts) > index else ""

        for i in range(1, len(parts)):
            name = "/".join(parts[:i])
            if parts[i] not in ("app", "session") or name not in known:
                continue
            tail = parts[i:]
            if tail[0] == "app":
                return _Target(name, "app", path=below(i + 1))
            if tail == ["session"]:
                return _Target(name, "reserve")
            if len(tail) >= 3 and tail[2] == "app":
                return _Target(name, "session-app", tail[1], below(i + 3))
            if len(tail) == 3 and tail[2] == "stop":
                return _Target(name, "stop", tail[1])
        return None

    async def _parse_session(self, rest: str) -> _Target | None:
        """A path of a session whose app no orchestrator lists any more (its session may still be held)."""
        parts = [unquote(p) for p in rest.split("/")]
        for i in range(1, len(parts) - 2):
            if parts[i] != "session" or parts[i + 2] not in ("app", "stop"):
                continue
            held = await self.sessions.find(parts[i + 1])
            if held is not None and held.app == "/".join(parts[:i]):
                return self._parse(rest, {held.app})
        return None

    def _tries(self, app: str, single_shot: bool, what: str) -> Tries[AppOffer]:
        async def pick(tried: Collection[str]) -> AppOffer | None:
            offers = [o for o in self.apps.named(app) if o.single_shot == single_shot and o.url not in tried]
            if not offers:
                offers = [
                    o
                    for o in self.apps.named(app, suspended=True)
                    if o.single_shot == single_shot and o.url not in tried
                ]
            if not offers:
                return None
            by_url = {o.url: o for o in offers}
            return by_url[self.selector.order([o.as_offer() for o in offers], self.stats)[0].url]

        return Tries(what, pick, lambda offer: offer.url)

    def _check_mode(self, app: str, single_shot: bool) -> None:
        modes = {o.single_shot for o in self.apps.named(app) + self.apps.named(app, suspended=True)}
        if modes and single_shot not in modes:
            if single_shot:
                raise BadRequestError(
                    f'the app "{app}" is persistent: reserve a session with POST /apps/{app}/session and call its '
                    "app_url"
                )
            raise BadRequestError(f'{wire.ONLY_PERSISTENT_SESSIONS}: call the app "{app}" at /apps/{app}/app/<path>')

    # --- single-shot calls ---------------------------------------------------------------------------------

    async def _single_shot(self, request: Request, target: _Target, job: JobRecord) -> Response:
        self._check_mode(target.app, single_shot=True)
        body = await _read_body(request)
        headers = request_headers(request.scope["headers"], keep_authorization=self.wrapper.admit is None)
        query = request.scope.get("query_string", b"").decode("latin-1")
        suffix = target.path + (f"?{query}" if query else "")
        tries = self._tries(target.app, True, f'call the app "{target.app}"')
        return await tries.run(lambda offer: self._call(offer, request.method, suffix, headers, body, job))

    async def _call(
        self, offer: AppOffer, method: str, suffix: str, headers: list[tuple[str, str]], body: bytes, job: JobRecord
    ) -> Response:
        measured = offer.as_offer()
        self.stats.started(measured)
        started = time.monotonic()
        try:
            upstream, funding = await self._send_paid(offer, method, offer.url + suffix, headers, body or None)
            refused = await self._refused(offer, upstream)
        except Retry:
            self.stats.finished(measured, None)
            raise
        job.orchestrator, job.model_id = offer.orchestrator, offer.model_id
        if refused is not None:
            if funding is not None:
                await funding.stop()
            self.stats.finished(measured, time.monotonic() - started)
            return refused
        self.apps.succeeded(offer)

        async def ended(status: int) -> None:
            if funding is not None:  # a metered call is paid while its answer streams
                await funding.stop()
            self.stats.finished(measured, time.monotonic() - started if status < 500 else None)

        return relayed(upstream, ended)

    async def _send(
        self, offer: AppOffer, method: str, url: str, headers: list[tuple[str, str]], body: object
    ) -> aiohttp.ClientResponse:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.session.request(
                    method, url, headers=headers, data=body, ssl=False, allow_redirects=False,
                    auto_decompress=False, skip_auto_headers=_NO_AUTO,
                )  # fmt: skip
        except TimeoutError:
            problem = f"no answer within {self.timeout:g}s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            problem = f"no answer ({exc or type(exc).__name__})"
        self.apps.suspend(offer, problem)
        raise Retry(problem)

    async def _send_paid(
        self,
        offer: AppOffer,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        *,
        funded: bool = True,
    ) -> tuple[aiohttp.ClientResponse, AppFunding | None]:
        """:meth:`_send`; through a remote signer, an app's 402 challenge is paid and the request sent again
        (a metered app's payments then go on until the call or session ends)."""
        if self.signer is None:
            return await self._send(offer, method, url, headers, body), None
        from lpnode.gateway.remote_signer import SignerRefusal, paid_app_request

        try:
            return await paid_app_request(
                self.signer, self.session, lambda sent: self._send(offer, method, url, sent, body), headers,
                offer.app, offer.price_unit, offer.price_wei or None, funded=funded,
            )  # fmt: skip
        except SignerRefusal as exc:
            self.apps.suspend(offer, f"cannot pay it: {exc}")
            raise Retry(f"cannot pay it: {exc}") from None

    async def _refused(self, offer: AppOffer, upstream: aiohttp.ClientResponse) -> Response | None:
        """Raises :class:`Retry` when the orchestrator could not give the call to this instance; returns a whole
        error answer read to tell (the app's own), or None when the answer is the app's, still to stream."""
        status = upstream.status
        if status not in (404, 502, 503) or (status == 404 and upstream.content_type != "text/plain"):
            return None
        body = await upstream.content.read(ERROR_BODY_LIMIT)
        await release(upstream)
        message = error_message(body)
        if status == 503:
            hint = upstream.headers.get("Retry-After", "")
            retry_after = float(hint) if hint.isdigit() else BUSY_RETRY
            raise Retry(message or "no capacity", busy=True, retry_after=retry_after)
        if status == 502:
            self.apps.suspend(offer, f"answered 502: {message}")
            raise Retry(f"answered 502: {message}")
        if message in GONE_MESSAGES:
            self.apps.drop(offer)
            raise Retry(f"its orchestrator no longer has it ({message})")
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "retry-after")}
        return Response(body, status_code=status, headers=passed)

    # --- sessions ------------------------------------------------------------------------------------------

    async def _reserve(self, target: _Target, job: JobRecord) -> Response:
        self._check_mode(target.app, single_shot=False)
        tries = self._tries(target.app, False, f'reserve a session of the app "{target.app}"')
        return await tries.run(lambda offer: self._reserve_on(offer, target.app, job))

    async def _reserve_on(self, offer: AppOffer, app: str, job: JobRecord) -> Response:
        upstream, funding = await self._send_paid(offer, "POST", offer.url, [], None)
        refused = await self._refused(offer, upstream)
        if refused is not None:
            if funding is not None:
                await funding.stop()
            return refused
        try:
            body = await upstream.content.read(ERROR_BODY_LIMIT)
        finally:
            await release(upstream)
        if upstream.status != 200 and funding is not None:
            await funding.stop()
        if upstream.status != 200:
            if 400 <= upstream.status < 500:
                raise answer_error(upstream.status, body)
            self.apps.suspend(offer, f"answered {upstream.status}: {error_message(body)}")
            raise Retry(f"answered {upstream.status}: {error_message(body)}")
        try:
            answer = upstream_json(body)
            sid, app_url, control_url = (str(answer[k]) for k in wire.SESSION_FIELDS)
        except (ValueError, KeyError, TypeError):
            self.apps.suspend(offer, "its session answer is not {session_id, app_url, control_url}")
            raise Retry("its session answer is not {session_id, app_url, control_url}") from None
        self.apps.succeeded(offer)
        job.orchestrator, job.model_id = offer.orchestrator, offer.model_id
        where = (offer.orchestrator, app_url, control_url)
        held = AppSessionRecord(sid, app, *where, job.key_id, offer.model_id, time.time())
        try:
            await self.sessions.add(held, funding)
        except JobError:  # the database did not answer: the session would be lost, so it is not kept
            if funding is not None:
                await funding.stop()
            await self._stop_upstream(held)
            raise
        base = f"{self.public_url}/apps/{quote(app, safe='/')}/session/{quote(sid, safe='')}"
        log_event(log, "runner app session reserved", app=app, session=sid, orchestrator=offer.orchestrator)
        return JSONResponse({"session_id": sid, "app_url": base + "/app", "control_url": base})

    async def _session(self, target: _Target, key_id: int | None) -> AppSessionRecord:
        held = await self.sessions.get(target.session_id, target.app, key_id)
        if held is None:
            raise NotFoundError(wire.SESSION_NOT_FOUND)
        return held

    async def _stop(self, target: _Target, job: JobRecord) -> Response:
        held = await self.sessions.get(target.session_id, target.app, job.key_id)
        if held is None:
            return Response(status_code=204)  # as go-livepeer: stopping an unknown session is not an error
        await self.sessions.end(held.session_id)
        job.orchestrator, job.model_id = held.orchestrator, held.model_id
        await self._stop_upstream(held)
        return Response(status_code=204)

    async def _stop_upstream(self, held: AppSessionRecord) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.post(held.control_url + "/stop", ssl=False) as answer:
                    await answer.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log_event(log, "runner app session stop failed", logging.WARNING, app=held.app, problem=str(exc))

    async def _session_call(self, request: Request, target: _Target, job: JobRecord) -> Response:
        held = await self._session(target, job.key_id)
        job.orchestrator, job.model_id = held.orchestrator, held.model_id
        headers = request_headers(request.scope["headers"], keep_authorization=self.wrapper.admit is None)
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = held.app_url + target.path + (f"?{query}" if query else "")
        has_body = request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers
        try:
            async with asyncio.timeout(self.timeout):
                upstream = await self.session.request(
                    request.method, url, headers=headers, data=request.stream() if has_body else None, ssl=False,
                    allow_redirects=False, auto_decompress=False, skip_auto_headers=_NO_AUTO,
                )  # fmt: skip
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            problem = str(exc) or type(exc).__name__
            raise PipelineFailedError(f"the orchestrator holding this session did not answer: {problem}") from None
        if upstream.status == 404 and upstream.content_type == "text/plain":
            body = await upstream.content.read(ERROR_BODY_LIMIT)
            await release(upstream)
            if error_message(body) in GONE_MESSAGES:
                await self.sessions.end(held.session_id)  # released there (stopped, or its runner left)
                raise NotFoundError(wire.SESSION_NOT_FOUND)
            return Response(body, status_code=404, media_type="text/plain")
        return relayed(upstream)

    # --- WebSocket -----------------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        job = JobRecord(pipeline=APP_PIPELINE_PREFIX)
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            if self.wrapper.admit is not None:
                job.admission = await self.wrapper.admit(HTTPConnection(scope).headers.get("authorization"))
                job.key_id, job.key_name = job.admission.key.id, job.admission.key.name
            upstream = await self._connect(scope, await self._target(scope, job), job)
        except JobError as exc:
            await send({"type": "websocket.close", "code": 1013 if exc.status_code == 503 else 1008})
            self._finish(job, exc.status_code)
            return
        try:
            await pump_websocket(receive, send, upstream)
        finally:
            self._finish(job, 101)

    async def _connect(self, scope: Scope, target: _Target, job: JobRecord) -> aiohttp.ClientWebSocketResponse:
        headers = request_headers(scope["headers"], keep_authorization=self.wrapper.admit is None, websocket=True)
        offered = HTTPConnection(scope).headers.get("sec-websocket-protocol", "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        query = scope.get("query_string", b"").decode("latin-1")
        suffix = target.path + (f"?{query}" if query else "")

        async def connect(url: str) -> aiohttp.ClientWebSocketResponse:
            async with asyncio.timeout(self.timeout):
                return await self.session.ws_connect(
                    websocket_url(url + suffix), headers=headers, protocols=protocols, ssl=False, autoclose=False,
                    autoping=True, max_msg_size=0,
                )  # fmt: skip

        if target.action == "session-app":
            held = await self._session(target, job.key_id)
            job.orchestrator, job.model_id = held.orchestrator, held.model_id
            try:
                return await connect(held.app_url)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise UnavailableError(f"the session's app refused the WebSocket: {exc}") from None
        if target.action != "app":
            raise MethodNotAllowedError(f"{scope['path']} takes POST, not a WebSocket")
        self._check_mode(target.app, single_shot=True)

        async def attempt(offer: AppOffer) -> aiohttp.ClientWebSocketResponse:
            try:
                socket = await connect(offer.url)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status != 503:
                    self.apps.suspend(offer, f"refused the WebSocket ({exc.status})")
                raise Retry(f"refused the WebSocket ({exc.status}: {exc.message})", busy=exc.status == 503) from None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.apps.suspend(offer, f"no answer ({exc or type(exc).__name__})")
                raise Retry(f"no answer ({exc or type(exc).__name__})") from None
            job.orchestrator, job.model_id = offer.orchestrator, offer.model_id
            return socket

        return await self._tries(target.app, True, f'open a WebSocket to the app "{target.app}"').run(attempt)

    def _finish(self, job: JobRecord, status: int) -> None:
        if job.admission is not None:
            job.admission.release()
        if self.wrapper.record is not None:
            self.wrapper.record(job, status)


def upstream_json(body: bytes) -> dict[str, object]:
    """A JSON object answer (ValueError for anything else)."""
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _guess_name(rest: str) -> str:
    """The app name a path under ``/apps/`` most likely meant: up to its ``app`` or ``session`` segment."""
    parts = [unquote(p) for p in rest.split("/")]
    for i in range(1, len(parts)):
        if parts[i] in ("app", "session"):
            return "/".join(parts[:i])
    return "/".join(parts)


async def _read_body(request: Request) -> bytes:
    too_large = f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(too_large)
    body = await SpooledBody.read(request.stream(), MAX_BODY_BYTES, lambda: PayloadTooLargeError(too_large))
    try:
        return await body.whole()
    finally:
        body.close()
