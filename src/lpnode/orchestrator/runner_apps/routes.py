"""The runner-app routes on the orchestrator's public port, as one ASGI app in front of the node's own.

:class:`RunnerAppsFront` first offers every request to the public proxy template (a match is always answered
here, never falls through), then serves go-livepeer's Live Runner paths (research §5–§10), and hands everything
else to the wrapped app. With the feature off (no registry) the Live Runner paths answer 404
``live runners are not supported``, as go-livepeer does. Errors are plain text with a trailing newline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import unquote

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from lpnode.logs import log_event
from lpnode.orchestrator.runner_apps.admission import Admission, JsonRefusal, PaymentRoutes
from lpnode.orchestrator.runner_apps.app_proxy import AppProxy
from lpnode.orchestrator.runner_apps.records import AppRunner, AppSession
from lpnode.orchestrator.runner_apps.registry import AppError, AppRegistry
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.asgi import ASGIApp, Receive, Scope, Send

log = logging.getLogger("lpnode.orchestrator.runner_apps")
BODY_LIMIT = 1024 * 1024
"""The most of a registration or callback body read (they are small JSON documents)."""


def text(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


def _segments(scope: Scope) -> list[str]:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.split(b"?", 1)[0].decode("latin-1")
    return [unquote(part) for part in path.split("/")[1:]]


def _app_path(scope: Scope, skip: int) -> str:
    """The request's path after its first ``skip`` segments (``""`` or ``/...``)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    parts = raw.split(b"?", 1)[0].decode("latin-1").split("/")
    rest = "/".join(parts[skip + 1 :])
    return "/" + rest if len(parts) > skip + 1 else ""


class RunnerAppsFront:
    """ASGI: runner-app routes and public proxy URLs before ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        registry: AppRegistry | None,
        admission: Admission | None,
        proxy: AppProxy | None,
        payments: PaymentRoutes | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self.admission = admission
        self.proxy = proxy
        self.payments = payments
        """On chain: the payment routes and discovery's prices (None off-chain)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        parts = _segments(scope)
        head = parts[0] if parts else ""
        ours = head in ("runners", "apps", "runner") or scope["path"] == wire.DISCOVERY_PATH
        if self.payments is not None and scope["path"] == wire.REFRESH_PAYMENT_PATH:
            await self._guard(self._refresh_payment, scope, receive, send)
            return
        if self.registry is not None:
            host = HTTPConnection(scope).headers.get("host", "")
            matched = self.registry.proxy_template.match(host, scope["path"])
            if matched is not None:
                await self._guard(self._proxied, scope, receive, send, *matched)
                return
        if not ours:
            await self.app(scope, receive, send)
            return
        if self.registry is None:
            await self._answer(scope, receive, send, text(404, wire.NOT_SUPPORTED))
            return
        await self._guard(self._dispatch, scope, receive, send, parts)

    async def _guard(self, handler: Any, scope: Scope, receive: Receive, send: Send, *args: Any) -> None:
        try:
            response = await handler(scope, receive, send, *args)
        except JsonRefusal as exc:
            response = JSONResponse(exc.document, status_code=exc.status)
        except AppError as exc:
            response = text(exc.status, exc.message)
        if response is not None:
            await self._answer(scope, receive, send, response)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, response: Response) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await response(scope, receive, send)

    # -- dispatch ---------------------------------------------------------------------------------------------

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, parts: list[str]) -> Response | None:
        method = scope.get("method", "GET")
        n = len(parts)
        head = parts[0]
        if head == "discovery" and n == 1:
            return _only(method, "GET") or JSONResponse(self._discovery())
        if head == "runners":
            if parts[1:] == ["heartbeat"]:
                return _only(method, "POST") or await self._heartbeat(scope, receive)
            if n == 3 and parts[2] == "unregister":
                return _only(method, "POST") or self._unregister(scope, parts[1])
            return text(404, "404 page not found")
        if head == "apps" and n >= 3:
            route = parts[1]
            if parts[2] == "app":
                return await self._single_shot(scope, receive, send, route, _app_path(scope, 3))
            if parts[2] == "session":
                if n == 3:
                    return _only(method, "POST") or await self._reserve(scope, route)
                sid = parts[3]
                if n >= 5 and parts[4] == "app":
                    await self._session_app(scope, receive, send, route, sid, _app_path(scope, 5))
                    return None
                if n == 5 and parts[4] == "stop":
                    return _only(method, "POST") or self._client_stop(route, sid)
                if n == 5 and parts[4] == "payment":
                    return _only(method, "POST") or await self._payment(scope, route, sid)
        if head == "runner" and n == 5 and parts[2] == "session":
            return await self._callback(scope, receive, parts[1], parts[3], parts[4])
        return text(404, "404 page not found")

    @property
    def _registry(self) -> AppRegistry:
        assert self.registry is not None
        return self.registry

    # -- registration ------------------------------------------------------------------------------------------

    async def _heartbeat(self, scope: Scope, receive: Receive) -> Response:
        body = await _read(scope, receive)
        auth = HTTPConnection(scope).headers.get("authorization", "")
        return JSONResponse(self._registry.heartbeat(body, auth))

    def _unregister(self, scope: Scope, runner_id: str) -> Response:
        self._registry.unregister(runner_id, HTTPConnection(scope).headers.get("authorization", ""))
        return Response(status_code=204)

    # -- client routes -----------------------------------------------------------------------------------------

    async def _reserve(self, scope: Scope, route: str) -> Response:
        registry = self._registry
        runner = registry.runner(route)
        if runner.single_shot:
            raise AppError(400, wire.ONLY_PERSISTENT_SESSIONS)
        session = await self._admit(scope, runner, single_shot=False)
        base = registry.public_url
        if runner.advert.proxy:
            app_url = registry.create_proxy(runner, session)["url"]
        else:
            app_url = base + wire.session_app_path(runner.route, session.id)
        control = base + wire.control_path(runner.route, session.id)
        return JSONResponse({"session_id": session.id, "app_url": app_url, "control_url": control})

    async def _admit(self, scope: Scope, runner: AppRunner, *, single_shot: bool) -> AppSession:
        assert self.admission is not None
        return await self.admission.admit(HTTPConnection(scope), runner, single_shot=single_shot)

    def _client_stop(self, route: str, session_id: str) -> Response:
        runner = self._registry.known_runner(route)
        session = runner.sessions.get(session_id)
        if session is not None and self._registry.release(runner, session_id) and self.admission is not None:
            self.admission.done(runner, session)
        return Response(status_code=204)

    async def _payment(self, scope: Scope, route: str, session_id: str) -> Response:
        if self.payments is not None:
            return await self.payments.session_payment(HTTPConnection(scope), route, session_id)
        runner = self._registry.runner(route)
        if session_id not in runner.sessions:
            raise AppError(404, wire.SESSION_NOT_FOUND)
        raise AppError(400, "this orchestrator runs off-chain: runner app sessions take no payments")

    async def _refresh_payment(self, scope: Scope, receive: Receive, send: Send) -> Response:
        assert self.payments is not None
        if scope.get("method") != "POST":
            return text(405, "Method Not Allowed")
        return await self.payments.refresh_payment(await _read(scope, receive))

    def _discovery(self) -> list[dict[str, Any]]:
        """``GET /discovery``; on chain each runner carries its price in wei (go's ``price_info``)."""
        registry = self._registry
        document = registry.discovery()
        if self.payments is None or not document[0].get("runners"):
            return document
        now = registry.clock()
        # The registry lists ready runners in its own order: the same walk pairs each entry with its runner.
        ready = [r for r in registry.runners() if r.ready(now, registry.ttl)]
        for entry, runner in zip(document[0]["runners"], ready, strict=False):
            price = self.payments.discovery_price(runner)
            if price is not None:
                entry["price_info"] = price
        return document

    async def _session_app(
        self, scope: Scope, receive: Receive, send: Send, route: str, session_id: str, app_path: str
    ) -> None:
        runner = self._registry.runner(route)
        session = runner.sessions.get(session_id)
        if session is None:
            raise AppError(404, wire.SESSION_NOT_FOUND)
        await self._relay(scope, receive, send, runner, session, runner.advert.runner_url, app_path)

    async def _single_shot(
        self, scope: Scope, receive: Receive, send: Send, route: str, app_path: str
    ) -> Response | None:
        runner = self._registry.runner(route)
        if not runner.single_shot:
            raise AppError(400, wire.NOT_SINGLE_SHOT)
        session = await self._admit(scope, runner, single_shot=True)
        assert self.admission is not None
        relay = asyncio.ensure_future(
            self._relay(scope, receive, send, runner, session, runner.advert.runner_url, app_path)
        )
        self.admission.bind(runner, session, relay)
        try:
            await asyncio.shield(relay)
        except asyncio.CancelledError:
            if not relay.cancelled():  # this request itself was cancelled: so is its relay
                relay.cancel()
                raise
            # Released under the call (its payment ran out): the client sees the connection drop.
            log_event(log, "runner app call cut off: its session was released", runner_id=runner.runner_id)
        finally:
            if self._registry.release(runner, session.id) and self.admission is not None:
                self.admission.done(runner, session)
        return None

    async def _proxied(self, scope: Scope, receive: Receive, send: Send, proxy_id: str, app_path: str) -> None:
        runner, session, target = self._registry.resolve_proxy(proxy_id)
        if session is None:
            await self._single_shot(scope, receive, send, runner.route, app_path)
            return
        await self._relay(scope, receive, send, runner, session, target, app_path)

    async def _relay(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        runner: AppRunner,
        session: AppSession,
        target: str,
        app_path: str,
    ) -> None:
        assert self.proxy is not None
        headers = self._registry.session_headers(runner, session)
        if scope["type"] == "websocket":
            await self.proxy.websocket(scope, receive, send, target, app_path, headers)
        else:
            await self.proxy.http(scope, receive, send, target, app_path, headers)

    # -- runner callbacks ----------------------------------------------------------------------------------------

    async def _callback(self, scope: Scope, receive: Receive, route: str, session_id: str, action: str) -> Response:
        method = scope.get("method", "GET")
        allowed = {"channels": ("POST", "DELETE"), "proxy": ("POST",), "stop": ("POST",)}.get(action)
        if allowed is None:
            return text(404, "404 page not found")
        if method not in allowed:
            return text(405, "Method Not Allowed")
        token = HTTPConnection(scope).headers.get(wire.SESSION_TOKEN_HEADER, "")
        registry = self._registry
        runner, session = registry.authorize(route, session_id, token)
        if action == "stop":
            if registry.release(runner, session_id) and self.admission is not None:
                self.admission.done(runner, session)
            return Response(status_code=204)
        body = await _read(scope, receive)
        document = _json(body) if body.strip() else {}
        if action == "proxy":
            target = document.get("target_url", "") if isinstance(document, dict) else ""
            if not isinstance(target, str):
                raise AppError(400, "target_url must be an absolute URL")
            return JSONResponse(registry.create_proxy(runner, session, target))
        if method == "POST":
            return JSONResponse({"channels": registry.create_channels(session, document)})
        return JSONResponse({"deleted": registry.delete_channels(session, document)})


def _only(method: str, allowed: str) -> Response | None:
    return None if method == allowed else text(405, "Method Not Allowed")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        raise AppError(400, f"invalid JSON: {exc}") from None


async def _read(scope: Scope, receive: Receive) -> bytes:
    request = Request(scope, receive)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            log_event(log, "runner app request body too large", logging.INFO, path=scope["path"])
            raise AppError(413, "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)
