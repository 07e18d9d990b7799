"""A runner app's calls back to its orchestrator for one session (research §9): trickle channels and stop.

    caller = SessionCaller.from_headers(request.headers)     # None when not called through an orchestrator
    channels = await caller.create_channels([ChannelSpec("in", "video/mp2t"), ...])
    await caller.stop()

Every call carries the session's ``Livepeer-Session-Token`` to the ``Livepeer-Session-Control`` URL the
orchestrator put on the request. Failures raise :class:`lpnode.errors.UnavailableError` (the orchestrator
refused or could not be reached) naming what failed; no aiohttp error leaves this module, and the token
never appears in a message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from lpnode.errors import UnavailableError
from lpnode.protocol.runner_apps import (
    SESSION_CONTROL_HEADER,
    SESSION_ID_HEADER,
    SESSION_TOKEN_HEADER,
)

CALLBACK_TIMEOUT = 10.0


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Channel:
    """A session channel: ``url`` is for clients, ``internal_url`` (when the orchestrator gives one) for the
    runner itself; :attr:`runner_url` picks the right one."""

    name: str
    url: str
    internal_url: str = ""
    mime_type: str = ""

    @property
    def runner_url(self) -> str:
        return self.internal_url or self.url


@dataclass(frozen=True)
class SessionCaller:
    session_id: str
    token: str
    control_url: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SessionCaller | None:
        """The session a proxied request belongs to; None unless all three session headers are there."""
        session_id = headers.get(SESSION_ID_HEADER, "").strip()
        token = headers.get(SESSION_TOKEN_HEADER, "").strip()
        control = headers.get(SESSION_CONTROL_HEADER, "").strip().rstrip("/")
        if not (session_id and token and control.startswith(("http://", "https://"))):
            return None
        return cls(session_id, token, control)

    async def create_channels(self, specs: Sequence[ChannelSpec]) -> dict[str, Channel]:
        """Create (or get back) the session's channels, by name as the orchestrator sanitised them."""
        body = {"channels": [{"name": s.name, "mime_type": s.mime_type} for s in specs]}
        answer = await self._call("POST", "/channels", body, "create the session's trickle channels")
        channels: dict[str, Channel] = {}
        for item in answer.get("channels", []) if isinstance(answer, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("url"), str) and isinstance(item.get("name"), str):
                channels[item["name"]] = Channel(
                    name=item["name"],
                    url=item["url"],
                    internal_url=str(item.get("internal_url") or ""),
                    mime_type=str(item.get("mime_type") or ""),
                )
        missing = [s.name for s in specs if s.name not in channels]
        if missing:
            raise UnavailableError(f"the orchestrator did not create the session's channels {', '.join(missing)}")
        return channels

    async def stop(self) -> None:
        """Release the session at the orchestrator (its channels close with it)."""
        await self._call("POST", "/stop", None, "stop the session")

    async def _call(self, method: str, path: str, body: object, what: str) -> object:
        headers = {SESSION_TOKEN_HEADER: self.token}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT)
        try:
            # ssl=False: orchestrators serve self-signed certificates (the SDK does the same)
            async with (
                aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(ssl=False)) as http,
                http.request(method, self.control_url + path, data=data, headers=headers) as response,
            ):
                text = await response.text(errors="replace")
                if response.status >= 300:
                    raise UnavailableError(
                        f"the orchestrator refused to {what}: {response.status} {text.strip()[:200]}"
                    )
                if not text.strip():
                    return None
                return json.loads(text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UnavailableError(f"could not reach the orchestrator to {what}: {exc or type(exc).__name__}") from None
        except ValueError:
            raise UnavailableError(f"the orchestrator's answer to {what} is not JSON") from None
