"""Reading a node's JSON from the command line (``lpnode status``, ``lpnode doctor``).

Orchestrators serve TLS with self-signed certificates (as go-livepeer's do), so ``https`` is read without
certificate checks: these commands only read status. An admin API (plain HTTP on loopback by default) is read
with the admin token in ``headers`` when one is set (:func:`lpnode.protocol.admin_access.admin_headers`).
Every failure is a :class:`Unreachable` whose text says what happened in one line.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 10.0


class Unreachable(Exception):
    """The node did not answer (with JSON, or over gRPC for the doctor); ``str()`` says why, in one line."""


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def base_url(text: str, default_scheme: str = "http") -> str:
    """``127.0.0.1:8936`` → ``<default_scheme>://127.0.0.1:8936``; trailing slashes dropped."""
    value = text.strip().rstrip("/")
    return value if "://" in value else f"{default_scheme}://{value}"


def get_json(url: str, timeout: float = TIMEOUT, headers: dict[str, str] | None = None) -> Any:
    """GET ``url`` (with ``headers``) and parse its JSON body."""
    status, body = request(url, headers=headers, timeout=timeout)
    if status != 200:
        raise Unreachable(f"{url} answered {status}: {body[:200].decode(errors='replace').strip()}")
    try:
        return json.loads(body)
    except ValueError:
        raise Unreachable(f"{url} did not answer JSON") from None


def request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> tuple[int, bytes]:
    """``(status, body)`` of a GET (or a POST with ``data``); HTTP error statuses are returned, not raised."""
    call = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(call, timeout=timeout, context=_context()) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        raise Unreachable(f"{url}: {reason}") from None
    except (OSError, ssl.SSLError) as exc:
        raise Unreachable(f"{url}: {exc}") from None
