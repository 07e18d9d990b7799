"""Keep this runner registered with a Live Runner orchestrator, as a runner app, by heartbeat.

    registration = AppRegistration(link, advert, status=lambda: "ready")
    async with registration.running():     # registers, heartbeats, reads the O2R channel
        ...                                # on exit: unregisters (bounded), never raises

What a caller may rely on (the wire is go-livepeer's ``POST /runners/heartbeat``, research §5 and §16):

- The first heartbeat carries the orchestrator secret; every later one the ``heartbeat_secret`` it answered.
  Heartbeats go out every ``heartbeat_interval`` the orchestrator names (a Go duration, "5s"), and at once
  when ``status()`` changes (polled every :data:`STATUS_POLL` s), so ``/health`` and the orchestrator agree
  within a fraction of a second.
- A heartbeat answered 401 or 404 (the orchestrator restarted, or let this runner expire) registers again
  with the orchestrator secret, proposing the same runner ID; if that ID is refused, a fresh one.
- Nothing raises out of the loop: a failure is logged (once per distinct failure, not every interval) and
  retried at the next interval. No secret, token or O2R URL is ever logged.
- The O2R channel is read from seq 0 after each registration: ``reserved``/``released`` events keep
  :attr:`AppRegistration.sessions` (sent back as ``session_ids``) and call the ``on_released`` hooks, as
  does a session the orchestrator no longer lists in a heartbeat answer.
- Leaving :meth:`AppRegistration.running` unregisters (``POST /runners/{id}/unregister``), waiting at most
  :data:`UNREGISTER_TIMEOUT` s. :meth:`AppRegistration.leave` does the same earlier, for good: a stopping runner
  calls it before it drains its in-flight calls, so the orchestrator sends it no new ones meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from lpnode.logs import log_event
from lpnode.protocol.go_duration import parse_go_duration
from lpnode.protocol.runner_apps import HEARTBEAT_PATH, O2R_EVENT_RELEASED, O2R_EVENT_RESERVED, unregister_path
from lpnode.trickle import TrickleSubscriber
from lpnode.trickle.errors import SegmentCutOffError, TrickleError

log = logging.getLogger("lpnode.runner.apps")

STATUS_POLL = 0.2
"""Seconds between looks at the runner's status; a change is heartbeated at once."""
REQUEST_TIMEOUT = 5.0
"""Seconds any one heartbeat may take (the SDK's default timeout)."""
UNREGISTER_TIMEOUT = 3.0
DEFAULT_INTERVAL = 5.0
"""Seconds between heartbeats until the orchestrator names its own interval (go-livepeer's 5 s)."""
MIN_INTERVAL, MAX_INTERVAL = 0.5, 60.0
"""The range an orchestrator's interval is held to, so a strange answer neither floods nor starves it."""

StatusSource = Callable[[], str]
ReleasedHook = Callable[[str], None]


@dataclass(frozen=True)
class OrchestratorLink:
    """Where to register: the orchestrator's base URL and its secret (``-orchSecret``)."""

    url: str
    secret: str


@dataclass(frozen=True)
class AppAdvert:
    """What the heartbeat advertises (research §5.1); ``status`` comes from the runner at each heartbeat."""

    runner_url: str
    app: str
    mode: str
    capacity: int
    version: str = ""
    metadata: str = ""
    gpu: dict[str, Any] | None = None
    price_info: dict[str, Any] | None = None
    label: str = ""

    def body(self, status: str, runner_id: str, session_ids: list[str]) -> dict[str, Any]:
        """The heartbeat's JSON body: optional keys left out when empty, as the SDK sends them."""
        body: dict[str, Any] = {
            "runner_url": self.runner_url,
            "app": self.app,
            "mode": self.mode,
            "capacity": self.capacity,
            "status": status,
            "session_ids": session_ids,
        }
        optional = {
            "runner_id": runner_id,
            "label": self.label,
            "version": self.version,
            "metadata": self.metadata,
            "gpu": self.gpu,
            "price_info": self.price_info,
        }
        body.update({key: value for key, value in optional.items() if value})
        return body


class _Refused(Exception):
    """The orchestrator answered a heartbeat with an error status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}".strip())
        self.status = status


@dataclass
class _State:
    runner_id: str = ""
    base_url: str = ""  # where heartbeats go: the runner-facing address the orchestrator answered
    secret: str = ""  # the issued heartbeat secret; "" until registered
    interval: float = DEFAULT_INTERVAL
    ttl: float = 0.0
    sessions: dict[str, None] = field(default_factory=dict)  # insertion-ordered set: oldest first


class AppRegistration:
    """One runner app's registration with one orchestrator (see the module docstring)."""

    def __init__(
        self,
        link: OrchestratorLink,
        advert: AppAdvert,
        status: StatusSource,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.link = link
        self.advert = advert
        self._status = status
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._state = _State(base_url=link.url.rstrip("/"))
        self._hooks: list[ReleasedHook] = []
        self._http: aiohttp.ClientSession | None = None
        self._o2r: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._left = False
        self._last_error = ""
        self._sent_status = ""
        self.registered = asyncio.Event()
        """Set while the orchestrator holds a registration for this runner."""

    # -- what callers read ----------------------------------------------------------------------
    @property
    def runner_id(self) -> str:
        return self._state.runner_id

    @property
    def orchestrator_url(self) -> str:
        """The runner-facing base URL heartbeats go to (the orchestrator's answer, else the one configured)."""
        return self._state.base_url

    @property
    def sessions(self) -> list[str]:
        """The sessions the orchestrator has reserved on this runner and not released, oldest first."""
        return list(self._state.sessions)

    @property
    def interval(self) -> float:
        return self._state.interval

    def on_released(self, hook: ReleasedHook) -> None:
        """Call ``hook(session_id)`` when a session is released (it must not block)."""
        self._hooks.append(hook)

    # -- life cycle -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[AppRegistration]:
        """Register and keep registered while the block runs; unregister when it ends."""
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False),  # orchestrators serve self-signed certificates
            timeout=self._timeout,
            headers={"Content-Type": "application/json"},
        )
        self._left = False
        self._loop_task = asyncio.create_task(self._loop(), name="runner-app-heartbeat")
        try:
            yield self
        finally:
            await self.leave()
            await self._http.close()
            self._http = None

    async def leave(self) -> None:
        """Stop heartbeating and unregister (at most :data:`UNREGISTER_TIMEOUT` s), for good: nothing registers
        this runner again until :meth:`running` is entered anew. Idempotent; never raises."""
        self._left = True
        loop, self._loop_task = self._loop_task, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(BaseException):
                await loop
        await self._stop_o2r()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._unregister(), UNREGISTER_TIMEOUT)

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # never let one bad answer end the registration for good
                self._failed(f"runner app heartbeat failed: {_describe(exc)}", 0)
            await self._wait_next()

    async def _wait_next(self) -> None:
        """Sleep one interval, or less when the runner's status changes meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._state.interval
        while loop.time() < deadline:
            await asyncio.sleep(min(STATUS_POLL, max(0.0, deadline - loop.time())))
            if self.registered.is_set() and self._current_status() != self._sent_status:
                return

    def _current_status(self) -> str:
        try:
            return self._status()
        except Exception:  # a status source that fails reports the runner as not serving
            return "error"

    async def beat(self) -> None:
        """One heartbeat (a registration when not registered); failures are logged, never raised. Nothing
        once :meth:`leave` has run."""
        if self._left:
            return
        try:
            if self._state.secret:
                try:
                    await self._heartbeat()
                except _Refused as exc:
                    if exc.status not in (401, 404):
                        raise
                    log_event(log, "orchestrator no longer knows this runner; registering again", reason=str(exc))
                    self._forget()
                    await self._register()
            else:
                await self._register()
        except _Refused as exc:
            self._failed(f"orchestrator refused the runner app: {exc}", exc.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed(f"orchestrator unreachable: {_describe(exc)}", 0)
        else:
            if self._last_error:
                log_event(log, "runner app heartbeat recovered", runner_id=self._state.runner_id)
            self._last_error = ""

    def _failed(self, message: str, status: int) -> None:
        if message != self._last_error:
            hint = ""
            if status == 401 and not self._state.secret:
                hint = "check --orch-secret: it must be the orchestrator's -orchSecret"
            elif status == 404:
                hint = "is the orchestrator started with -useLiveRunners and an -orchSecret?"
            fields = {"orchestrator": self.link.url, **({"hint": hint} if hint else {})}
            log_event(log, message, logging.WARNING, **fields)
        self._last_error = message

    async def _register(self) -> None:
        proposed = self._state.runner_id
        try:
            answer = await self._post(self.link.url.rstrip("/"), self.link.secret, proposed)
        except _Refused as exc:
            if exc.status == 401 and proposed:
                self._state.runner_id = ""  # the ID is someone else's (or still held): take a fresh one next time
            raise
        secret = answer.get("heartbeat_secret")
        if not isinstance(secret, str) or not secret:
            raise _Refused(0, "heartbeat answer lacks heartbeat_secret")
        self._state.secret = secret
        self._state.sessions.clear()
        self._take(answer)
        self.registered.set()
        log_event(
            log,
            "runner app registered",
            runner_id=self._state.runner_id,
            app=self.advert.app,
            mode=self.advert.mode,
            status=self._sent_status,
            orchestrator=self._state.base_url,
        )
        await self._stop_o2r()
        o2r = answer.get("o2r")
        url = o2r.get("url") if isinstance(o2r, dict) else None
        if isinstance(url, str) and url:
            self._o2r = asyncio.create_task(self._read_o2r(url), name="runner-app-o2r")

    async def _heartbeat(self) -> None:
        known = set(self._state.sessions)
        answer = await self._post(self._state.base_url, self._state.secret, self._state.runner_id)
        listed = answer.get("session_ids")
        if isinstance(listed, list):
            # A release whose O2R event was lost: the orchestrator's list is the truth for sessions it had then.
            for session_id in known - {s for s in listed if isinstance(s, str)}:
                self._release(session_id)
        self._take(answer)

    def _take(self, answer: dict[str, Any]) -> None:
        runner_id = answer.get("runner_id")
        if isinstance(runner_id, str) and runner_id:
            self._state.runner_id = runner_id
        base = answer.get("orchestrator")
        if isinstance(base, str) and base.startswith(("http://", "https://")):
            self._state.base_url = base.rstrip("/")
        for key, attr in (("heartbeat_interval", "interval"), ("heartbeat_ttl", "ttl")):
            text = answer.get(key)
            if isinstance(text, str) and text:
                with contextlib.suppress(ValueError):
                    value = parse_go_duration(text)
                    if attr == "interval":
                        value = min(max(value, MIN_INTERVAL), MAX_INTERVAL)
                    setattr(self._state, attr, value)

    def _forget(self) -> None:
        """The orchestrator lost this runner: its sessions are gone with it."""
        self.registered.clear()
        self._state.secret = ""
        self._state.base_url = self.link.url.rstrip("/")
        for session_id in list(self._state.sessions):
            self._release(session_id)

    async def _post(self, base: str, authorization: str, runner_id: str) -> dict[str, Any]:
        assert self._http is not None
        status = self._current_status()
        body = self.advert.body(status, runner_id, self.sessions)
        async with self._http.post(
            base + HEARTBEAT_PATH, data=json.dumps(body), headers={"Authorization": authorization}
        ) as response:
            text = await response.text(errors="replace")
            if response.status != 200:
                raise _Refused(response.status, text.strip()[:300])
        self._sent_status = status
        answer = json.loads(text)
        if not isinstance(answer, dict):
            raise ValueError("heartbeat answer is not a JSON object")
        return answer

    async def _unregister(self) -> None:
        if not self._state.secret or self._http is None:
            return
        url = self._state.base_url + unregister_path(self._state.runner_id)
        async with self._http.post(url, headers={"Authorization": self._state.secret}) as response:
            outcome = response.status
        self.registered.clear()
        self._state.secret = ""
        log_event(log, "runner app unregistered", runner_id=self._state.runner_id, status=outcome)

    # -- the O2R channel ------------------------------------------------------------------------
    async def _read_o2r(self, url: str) -> None:
        try:
            async with TrickleSubscriber(url, start_seq=0) as channel:
                async for segment in channel:
                    try:
                        self._o2r_message(await segment.read())
                    except SegmentCutOffError:
                        continue  # a message cut short is lost; the heartbeat's session_ids make up for it
        except (TrickleError, aiohttp.ClientError, TimeoutError) as exc:
            log_event(log, "runner app O2R channel lost", logging.WARNING, reason=_describe(exc))

    def _o2r_message(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        session_id, event = message.get("session"), message.get("event")
        if not isinstance(session_id, str) or not session_id:
            return  # {"keep": "alive"} and anything unknown
        if event == O2R_EVENT_RESERVED:
            self._state.sessions[session_id] = None
        elif event == O2R_EVENT_RELEASED:
            self._release(session_id)

    def _release(self, session_id: str) -> None:
        self._state.sessions.pop(session_id, None)
        for hook in self._hooks:
            try:
                hook(session_id)
            except Exception:  # one hook's failure must not stop the registration
                log.exception("runner app release hook failed")

    async def _stop_o2r(self) -> None:
        task, self._o2r = self._o2r, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
