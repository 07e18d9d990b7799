"""Who may use a node's admin API: the gateway's ``--cli-addr`` and the orchestrator's ``--cli-addr``.

An admin API listens on loopback by default, but a web page the operator has open can still reach it through
the browser. :class:`AdminGuard` wraps an admin app (ASGI) and refuses, before the app sees the request:

- **a foreign ``Host``** (403): the request must name the address the API listens on, or ``localhost``,
  ``127.0.0.1`` or ``[::1]``, with its port. A DNS-rebinding page (``evil.example`` made to resolve to
  127.0.0.1) sends ``Host: evil.example:5935`` and is refused. When the API listens on every interface
  (``0.0.0.0``, ``::``) any IP address with the port is accepted too: rebinding needs a name.
- **a cross-site request that changes state** (403): a method other than GET, HEAD and OPTIONS whose
  ``Origin`` (or, without one, ``Referer``) names another site, such as a form on a web page posting to
  ``/setMaxPriceForCapability``. Requests with neither header (curl, the ``lpnode`` commands) pass.
- **a request without the admin token** (401), when one is set (``--admin-token``, or ``LPNODE_ADMIN_TOKEN``):
  every request carries ``Authorization: Bearer <token>``. HTTP Basic with the token as the password
  (``curl -u :TOKEN``) is accepted too, so a browser can open the admin pages: it asks for it.

:func:`read_admin_token` reads the token the way ``--orch-secret`` is read (the value, or a file holding it);
the ``lpnode`` commands that call an admin API send it with :func:`admin_headers`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from lpnode.errors import ForbiddenError, JobError, UnauthorizedError, go_text_response
from lpnode.protocol.asgi import ASGIApp, Receive, Scope, Send
from lpnode.protocol.orch_secret import read_secret

ADMIN_TOKEN_ENV = "LPNODE_ADMIN_TOKEN"
"""The environment variable an admin token is read from when no ``--admin-token`` is given."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")


def read_admin_token(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``--admin-token``: the token itself, or the path of a file holding it (trimmed); without one, the
    ``LPNODE_ADMIN_TOKEN`` environment variable (same rules). Empty: no token is required."""
    text = (value or "").strip() or (os.environ if env is None else env).get(ADMIN_TOKEN_ENV, "").strip()
    return read_secret(text, "admin token")


def admin_headers(token: str) -> dict[str, str]:
    """The headers a client sends to an admin API: the bearer token when there is one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    """``("127.0.0.1", 5935)`` for ``127.0.0.1:5935``, ``[::1]:5935`` or ``localhost`` (default port); ``None``
    when it cannot be read."""
    try:
        parts = urlsplit("//" + netloc.strip())
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AdminAccess:
    """The rules for one admin API listening on ``host:port`` (see the module docstring)."""

    def __init__(self, host: str, port: int, token: str = "") -> None:
        self.listen_host = host.strip("[]").lower()
        self.port = port
        self.token = token

    def host_allowed(self, netloc: str, default_port: int = 80) -> bool:
        """True when ``netloc`` (a ``Host`` header, or an origin's host and port) names this API."""
        found = _host_port(netloc, default_port)
        if found is None or found[1] != self.port:
            return False
        host = found[0]
        if host in LOOPBACK_NAMES or host == self.listen_host:
            return True
        return self.listen_host in _WILDCARDS and _is_ip(host)

    def refusal(self, method: str, headers: Mapping[str, str]) -> JobError | None:
        """Why the request is refused (its answer's status and text), or ``None`` to serve it."""
        host = headers.get("host", "")
        if not self.host_allowed(host):
            return ForbiddenError(
                f"Host {host!r} is not this admin API's address; call it as http://127.0.0.1:{self.port} "
                "or by the address it listens on"
            )
        if method.upper() not in SAFE_METHODS:
            origin = headers.get("origin") or headers.get("referer") or ""
            if origin and not self._same_origin(origin):
                return ForbiddenError(
                    f"cross-site {method.upper()} refused: it comes from {origin!r}; the admin API only takes "
                    "changes from its own pages and from clients that send no Origin (curl, lpnode)"
                )
        if self.token and not self._token_given(headers.get("authorization", "")):
            return UnauthorizedError(
                "this admin API needs its admin token: send 'Authorization: Bearer <token>' "
                f"(the lpnode commands take --admin-token or {ADMIN_TOKEN_ENV})"
            )
        return None

    def _same_origin(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed page or a file) and anything else unreadable
        return self.host_allowed(parts.netloc, 443 if parts.scheme == "https" else 80)

    def _token_given(self, authorization: str) -> bool:
        scheme, _, value = authorization.strip().partition(" ")
        given = value.strip()
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(given, validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())


class AdminGuard:
    """ASGI middleware: ``app`` served only to requests :class:`AdminAccess` lets through; a refused request
    gets a plain-text answer (401 with ``WWW-Authenticate``, or 403) and never reaches ``app``."""

    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        problem = self.access.refusal(str(scope.get("method", "GET")), headers)
        if problem is None:
            await self.app(scope, receive, send)
            return
        answer = go_text_response(problem)
        if isinstance(problem, UnauthorizedError):
            # A browser asks for Basic credentials (the token as the password); scripts send Bearer.
            answer.headers["WWW-Authenticate"] = 'Basic realm="lpnode admin", Bearer realm="lpnode admin"'
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await answer(scope, receive, send)
