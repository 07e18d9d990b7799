"""The app registry: every runner app this orchestrator hosts, its sessions, and the bookkeeping around them.

All methods run on the event loop and never await between a check and the change it guards, so concurrent
requests cannot over-reserve a runner. A caller may rely on:

- :meth:`AppRegistry.heartbeat`: the body is checked before any credential (400 first), then go-livepeer's
  rules: registration with the orchestrator secret, follow-ups with the issued heartbeat secret.
- :meth:`AppRegistry.runner`: only ready, unexpired runners are found (404 ``runner not found`` otherwise).
- :meth:`AppRegistry.reserve` / :meth:`AppRegistry.release`: capacity = sessions; overflow is 503
  ``no capacity available for runner``; a release closes the session's trickle channels and proxies and tells
  the runner on its O2R channel.
- :meth:`AppRegistry.run`: the expiry sweep, static health polling and O2R keepalives until cancelled.

Every refusal is an :class:`AppError` carrying the status and go-livepeer's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from lpnode.logs import log_event
from lpnode.orchestrator.runner_apps.adverts import (
    Advert,
    AdvertError,
    StaticEntry,
    absolute_http_url,
    decode_json,
    parse_advert,
)
from lpnode.orchestrator.runner_apps.proxy_urls import ProxyTemplate
from lpnode.orchestrator.runner_apps.records import (
    AppRunner,
    AppSession,
    derive,
    new_proxy_id,
    new_runner_id,
    new_session_id,
    same_secret,
)
from lpnode.protocol import runner_apps as wire
from lpnode.protocol.go_duration import format_go_duration
from lpnode.trickle import TrickleServer
from lpnode.trickle.channels import NEXT_SEQ

log = logging.getLogger("lpnode.orchestrator.runner_apps")

HealthCheck = Callable[[str, int], Awaitable[bool]]
"""``(health_url, expected_status) -> healthy``; bounded by its own timeout."""


class AppError(Exception):
    """A refusal: ``status`` and the plain-text ``message`` (go-livepeer's words)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AppRegistry:
    """The runner apps of one orchestrator. ``public_url``: what clients see; ``runner_url``: what runners use
    (``-liveRunnerAddr``, else the public one)."""

    def __init__(
        self,
        *,
        public_url: str,
        runner_url: str,
        orch_secret: str,
        trickle: TrickleServer,
        proxy_template: ProxyTemplate,
        on_chain: bool = False,
        clock: Callable[[], float] = time.monotonic,
        interval: float = wire.HEARTBEAT_INTERVAL,
        ttl: float = wire.HEARTBEAT_TTL,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.runner_url = (runner_url or public_url).rstrip("/")
        self.orch_secret = orch_secret
        self.trickle = trickle
        self.proxy_template = proxy_template
        self.on_chain = on_chain
        self.clock = clock
        self.interval = interval
        self.ttl = ttl
        self._runners: dict[str, AppRunner] = {}

    # -- registration -------------------------------------------------------------------------------------

    def heartbeat(self, body: bytes, authorization: str) -> dict[str, Any]:
        """Register or refresh a dynamic runner; the heartbeat answer (research §5.1)."""
        try:
            decoded = decode_json(body)
            if isinstance(decoded, dict) and isinstance(decoded.get("runner_id"), str):
                decoded["runner_id"] = decoded["runner_id"].strip()
            advert = parse_advert(decoded, on_chain=self.on_chain)
        except AdvertError as exc:
            raise AppError(400, str(exc)) from None
        runner_id = advert.runner_id or new_runner_id()
        advert = replace(advert, runner_id=runner_id)
        now = self.clock()
        existing = self._runners.get(runner_id)
        if existing is None:
            return self._register(advert, authorization, now)
        if not existing.live(now, self.ttl):
            raise AppError(404, wire.RUNNER_NOT_FOUND)
        if existing.static:
            raise AppError(400, wire.STATIC_CANNOT_HEARTBEAT)
        if not same_secret(authorization, existing.heartbeat_secret):
            raise AppError(401, wire.INVALID_HEARTBEAT_AUTH)
        existing.advert = advert
        existing.last_seen = now
        return self._answer(existing, first=False)

    def _register(self, advert: Advert, authorization: str, now: float) -> dict[str, Any]:
        if not self.orch_secret:
            raise AppError(404, wire.REGISTRATION_DISABLED)
        if not same_secret(authorization, self.orch_secret):
            raise AppError(401, wire.INVALID_REGISTRATION_AUTH)
        runner = AppRunner(advert.runner_id, advert.runner_id, advert, secrets.token_bytes(32), now)
        runner.o2r_channel = f"{runner.runner_id}-{derive(runner.seed, 'trickle:o2r')[:16]}-o2r"
        self.trickle.create_channel(runner.o2r_channel, wire.JSON_MIME)
        self._runners[runner.route] = runner
        log_event(log, "runner app registered", runner_id=runner.runner_id, app=advert.app, mode=advert.mode)
        return self._answer(runner, first=True)

    def _answer(self, runner: AppRunner, *, first: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "runner_id": runner.runner_id,
            "orchestrator": self.runner_url,
            "heartbeat_interval": format_go_duration(self.interval),
            "heartbeat_ttl": format_go_duration(self.ttl),
        }
        if first:
            answer["heartbeat_secret"] = runner.heartbeat_secret
            answer["o2r"] = {
                "name": wire.O2R_CHANNEL_NAME,
                "channel_name": runner.o2r_channel,
                "url": self.runner_url + wire.TRICKLE_PREFIX + runner.o2r_channel,
                "mime_type": wire.JSON_MIME,
            }
        answer["session_ids"] = runner.session_ids()
        return answer

    def unregister(self, runner_id: str, authorization: str) -> None:
        runner = self._runners.get(runner_id)
        if runner is None or not runner.live(self.clock(), self.ttl):
            raise AppError(404, wire.RUNNER_NOT_FOUND)
        if runner.static:
            raise AppError(400, wire.STATIC_CANNOT_UNREGISTER)
        if not same_secret(authorization, runner.heartbeat_secret):
            raise AppError(401, wire.INVALID_AUTH)
        self._remove(runner, "unregistered")

    def _remove(self, runner: AppRunner, reason: str) -> None:
        runner.removed = True
        for session_id in list(runner.sessions):
            self.release(runner, session_id)
        if runner.o2r_channel:
            self.trickle.delete_channel(runner.o2r_channel)
        if self._runners.get(runner.route) is runner:
            del self._runners[runner.route]
        log_event(log, "runner app removed", runner_id=runner.runner_id, reason=reason)

    async def register_static(self, entries: list[StaticEntry], check: HealthCheck) -> list[dict[str, Any]]:
        """Upsert a checked ``runners.json`` batch (health-checked first, then applied at once)."""
        healthy = [await check(e.health_url, e.healthy_status_code) for e in entries]
        now = self.clock()
        answer = []
        for entry, ok in zip(entries, healthy, strict=True):
            runner = self._upsert_static(entry, ok, now)
            item: dict[str, Any] = {"runner_id": runner.runner_id, "label": entry.advert.label, "app": entry.advert.app}
            if entry.advert.proxy:
                item["proxy"] = True
            item |= {
                "runner_url": entry.advert.runner_url,
                "mode": entry.advert.mode,
                "health_url": entry.health_url,
                "healthy_status_code": entry.healthy_status_code,
                "healthy": ok,
            }
            answer.append(item)
        return answer

    def _upsert_static(self, entry: StaticEntry, healthy: bool, now: float) -> AppRunner:
        label = entry.advert.label
        runner = next((r for r in self._runners.values() if r.static and r.advert.label == label), None)
        if runner is None:
            runner_id = new_runner_id()
            while runner_id in self._runners:
                runner_id = new_runner_id()
            advert = replace(entry.advert, runner_id=runner_id)
            runner = AppRunner(runner_id, runner_id, advert, secrets.token_bytes(32), now, static=True)
        else:
            del self._runners[runner.route]
            runner.advert = replace(entry.advert, runner_id=runner.runner_id)
        runner.routing = entry.routing
        runner.route = label if entry.routing == wire.ROUTING_LABEL else runner.runner_id
        runner.health_url = entry.health_url
        runner.healthy_status_code = entry.healthy_status_code
        self._runners[runner.route] = runner
        self._set_health(runner, healthy)
        return runner

    def _set_health(self, runner: AppRunner, healthy: bool) -> None:
        if runner.healthy != healthy:
            log_event(log, "static runner app health changed", runner_id=runner.runner_id, healthy=healthy)
        runner.healthy = healthy
        if not healthy:
            for session_id in list(runner.sessions):
                self.release(runner, session_id)

    # -- lookups -------------------------------------------------------------------------------------------

    def runner(self, route: str) -> AppRunner:
        """The ready runner at ``route``; 404 ``runner not found`` otherwise."""
        runner = self._runners.get(route)
        if runner is None or not runner.ready(self.clock(), self.ttl):
            raise AppError(404, wire.RUNNER_NOT_FOUND)
        return runner

    def known_runner(self, route: str) -> AppRunner:
        """The runner at ``route`` even when not ready (client stop works then); 404 when absent or expired."""
        runner = self._runners.get(route)
        if runner is None or not runner.live(self.clock(), self.ttl):
            raise AppError(404, wire.RUNNER_NOT_FOUND)
        return runner

    def runners(self) -> list[AppRunner]:
        now = self.clock()
        return [r for r in self._runners.values() if r.live(now, self.ttl)]

    def discovery(self) -> list[dict[str, Any]]:
        """``GET /discovery``'s body: one entry for this orchestrator, its ready runners inside."""
        now = self.clock()
        entries = [self._discovery_entry(r) for r in self._runners.values() if r.ready(now, self.ttl)]
        node: dict[str, Any] = {"address": self.public_url} if self.public_url else {}
        if entries:
            node["runners"] = entries
        return [node]

    def _discovery_entry(self, runner: AppRunner) -> dict[str, Any]:
        a = runner.advert
        if runner.single_shot and a.proxy:
            url = self.proxy_template.url(runner.route)
        elif runner.single_shot:
            url = self.public_url + wire.single_shot_path(runner.route)
        else:
            url = self.public_url + wire.session_path(runner.route)
        entry: dict[str, Any] = {"url": url}
        if a.gpu is not None and a.gpu.to_json():
            entry["gpu"] = a.gpu.to_json()
        entry["app"] = a.app
        if a.version:
            entry["version"] = a.version
        if a.metadata:
            entry["metadata"] = a.metadata
        used = len(runner.sessions)
        entry |= {
            "mode": a.mode,
            "capacity": a.capacity,
            "capacity_used": used,
            "capacity_available": a.capacity - used,
        }
        return entry

    # -- sessions -------------------------------------------------------------------------------------------

    def reserve(self, runner: AppRunner, session_id: str = "") -> AppSession:
        """Take one slot of ``runner``: 503 when full, 409 when ``session_id`` is taken."""
        if len(runner.sessions) >= runner.advert.capacity:
            raise AppError(503, wire.NO_CAPACITY)
        if session_id and session_id in runner.sessions:
            raise AppError(409, "session already exists")
        if not session_id:
            session_id = new_session_id()
            while session_id in runner.sessions:
                session_id = new_session_id()
        session = AppSession(session_id, self.clock(), runner.advert.price_info)
        runner.sessions[session_id] = session
        self._tell(runner, wire.O2R_EVENT_RESERVED, session_id)
        log_event(log, "runner app session reserved", logging.DEBUG, runner_id=runner.runner_id, session=session_id)
        return session

    def release(self, runner: AppRunner, session_id: str) -> bool:
        """Free the slot; its channels close and its proxies are forgotten. False if it was not held."""
        session = runner.sessions.pop(session_id, None)
        if session is None:
            return False
        for descriptor in session.channels.values():
            self.trickle.delete_channel(descriptor["channel_name"])
        session.proxies.clear()
        self._tell(runner, wire.O2R_EVENT_RELEASED, session_id)
        log_event(log, "runner app session released", logging.DEBUG, runner_id=runner.runner_id, session=session_id)
        return True

    def authorize(self, route: str, session_id: str, token: str) -> tuple[AppRunner, AppSession]:
        """A runner callback's runner and session: 404 runner / session, then 401 for a wrong token."""
        runner = self.runner(route)
        session = runner.sessions.get(session_id)
        if session is None:
            raise AppError(404, wire.SESSION_NOT_FOUND)
        if not same_secret(token, runner.session_token(session_id)):
            raise AppError(401, wire.INVALID_AUTH)
        return runner, session

    def session_headers(self, runner: AppRunner, session: AppSession) -> dict[str, str]:
        """The four ``Livepeer-*`` headers of every request proxied within ``session``."""
        return {
            wire.ROUTE_HEADER: runner.route,
            wire.SESSION_ID_HEADER: session.id,
            wire.SESSION_TOKEN_HEADER: runner.session_token(session.id),
            wire.SESSION_CONTROL_HEADER: self.runner_url + wire.runner_control_path(runner.route, session.id),
        }

    # -- trickle channels and proxies ------------------------------------------------------------------------

    def create_channels(self, session: AppSession, requested: Any) -> list[dict[str, str]]:
        """Create (or return) the session's channels, in order; 400 on a bad entry (earlier ones stay)."""
        items = _channel_list(requested)
        out = []
        for item in items:
            if not isinstance(item, dict):
                raise AppError(400, "invalid channel entry")
            name = _channel_name(item.get("name"))
            mime = item.get("mime_type") or wire.DEFAULT_CHANNEL_MIME
            if not isinstance(mime, str):
                raise AppError(400, "mime_type must be a string")
            descriptor = session.channels.get(name)
            if descriptor is None:
                channel_name = f"{session.id}-{name}"
                descriptor = {
                    "name": name,
                    "channel_name": channel_name,
                    "url": self.public_url + wire.TRICKLE_PREFIX + channel_name,
                    "internal_url": self.runner_url + wire.TRICKLE_PREFIX + channel_name,
                    "mime_type": mime,
                }
                session.channels[name] = descriptor
            # Made again if the trickle server swept it as idle: the descriptor handed out stays valid.
            self.trickle.create_channel(descriptor["channel_name"], descriptor["mime_type"])
            out.append(dict(descriptor))
        return out

    def delete_channels(self, session: AppSession, requested: Any) -> list[Any]:
        items = _channel_list(requested)
        for item in items:
            if not isinstance(item, str):
                raise AppError(400, "channel names must be strings")
            name = _channel_name(item)
            descriptor = session.channels.pop(name, None)
            if descriptor is None:
                raise AppError(404, wire.CHANNEL_NOT_FOUND)
            self.trickle.delete_channel(descriptor["channel_name"])
        return list(items)

    def create_proxy(self, runner: AppRunner, session: AppSession, target: str = "") -> dict[str, str]:
        """A public proxy URL for ``session`` to ``target`` (default: the runner's URL; same host only)."""
        target = target.strip() or runner.advert.runner_url
        parts = urlsplit(target)
        if not parts.scheme or not parts.netloc:
            raise AppError(400, "target_url must be an absolute URL")
        if parts.scheme not in ("http", "https"):
            raise AppError(400, "target_url scheme must be http or https")
        if parts.fragment or target.endswith("#"):
            raise AppError(400, "target_url must not include a fragment")
        registered = urlsplit(runner.advert.runner_url)
        if not absolute_http_url(runner.advert.runner_url):
            raise AppError(502, "invalid registered runner_url")
        if (parts.hostname or "") != (registered.hostname or ""):
            raise AppError(400, "target_url hostname must match registered runner_url hostname")
        proxy_id = new_proxy_id()
        session.proxies[proxy_id] = target
        return {"proxy_id": proxy_id, "url": self.proxy_template.url(proxy_id)}

    def resolve_proxy(self, proxy_id: str) -> tuple[AppRunner, AppSession | None, str]:
        """A proxy ID's runner, session and target; a single-shot ``proxy`` runner's route gives no session
        (the caller makes a single-shot call). 404 ``live runner proxy not found`` otherwise."""
        now = self.clock()
        for runner in self._runners.values():
            if not runner.ready(now, self.ttl):
                continue
            for session in runner.sessions.values():
                target = session.proxies.get(proxy_id)
                if target is not None:
                    return runner, session, target
        for runner in self._runners.values():
            matches = runner.route.lower() == proxy_id.lower() and runner.single_shot and runner.advert.proxy
            if matches and runner.ready(now, self.ttl):
                return runner, None, runner.advert.runner_url
        raise AppError(404, wire.PROXY_NOT_FOUND)

    # -- O2R ---------------------------------------------------------------------------------------------------

    def _tell(self, runner: AppRunner, event: str, session_id: str) -> None:
        timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._publish(runner, {"event": event, "session": session_id, "timestamp": timestamp})

    def _publish(self, runner: AppRunner, message: dict[str, Any]) -> None:
        if not runner.o2r_channel:
            return
        channel = self.trickle.channels.get(runner.o2r_channel)
        if channel is None or channel.closed:
            return
        segment = channel.for_write(NEXT_SEQ)
        channel.started(segment.seq)
        segment.write(json.dumps(message).encode())
        segment.close()

    # -- background work ------------------------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Remove expired dynamic runners now; their IDs."""
        now = self.clock()
        gone = [r for r in self._runners.values() if not r.static and now - r.last_seen > self.ttl]
        for runner in gone:
            self._remove(runner, "heartbeat TTL expired")
        return [r.runner_id for r in gone]

    async def check_static(self, check: HealthCheck) -> None:
        """Poll every static runner's health once; a runner turning unhealthy loses its sessions."""
        statics = [r for r in self._runners.values() if r.static and not r.removed]
        results = await asyncio.gather(*(check(r.health_url, r.healthy_status_code) for r in statics))
        for runner, healthy in zip(statics, results, strict=True):
            if not runner.removed:
                self._set_health(runner, healthy)

    async def run(self, check: HealthCheck) -> None:
        """Sweep, poll static health and send O2R keepalives until cancelled."""
        last_keepalive = self.clock()
        while True:
            await asyncio.sleep(min(self.interval, wire.STATIC_HEALTH_INTERVAL))
            self.sweep()
            with contextlib.suppress(Exception):
                await self.check_static(check)
            if self.clock() - last_keepalive >= wire.O2R_KEEPALIVE_INTERVAL:
                last_keepalive = self.clock()
                for runner in list(self._runners.values()):
                    self._publish(runner, wire.O2R_KEEPALIVE)

    def close(self) -> None:
        """Release every session and close every O2R channel (the orchestrator is stopping)."""
        for runner in list(self._runners.values()):
            self._remove(runner, "orchestrator stopping")

    def status(self) -> list[dict[str, Any]]:
        return [r.status_view() for r in self.runners()]


def _channel_list(requested: Any) -> list[Any]:
    if not isinstance(requested, dict):
        raise AppError(400, "channels is required")
    items = requested.get("channels")
    if not isinstance(items, list) or not items:
        raise AppError(400, "channels is required")
    if len(items) > wire.CHANNELS_PER_CALL:
        raise AppError(400, f"channels cannot contain more than {wire.CHANNELS_PER_CALL} entries")
    return items


def _channel_name(value: Any) -> str:
    if not isinstance(value, str) or not wire.sanitize_channel_name(value):
        raise AppError(400, "trickle channel name is required")
    name = wire.sanitize_channel_name(value)
    if not wire.CHANNEL_NAME_RE.match(name):
        raise AppError(400, "trickle channel name may only contain alphanumerics, underscores, or hyphens")
    return name
