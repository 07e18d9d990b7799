"""The auth webhook: who may spend the signer's deposit (go-livepeer's ``-remoteSignerWebhookUrl``, #3897).

Before a payment is signed, the signer posts ``{"headers": {<the client's headers>}, "state": {<the updated
state, go's field names>}}`` (``Content-Type: application/json`` plus the ``-remoteSignerWebhookHeaders``, which
win over same-named ones; 5 s timeout) and reads ``{"status", "reason"?, "expiry"?, "auth_id"?, "maxPrice"?}``:

- ``status`` 200 allows the payment; ``expiry`` (Unix seconds) lets later calls with this state skip the webhook
  until then; ``auth_id`` is pinned in the state; ``maxPrice`` is one more price ceiling;
- any other ``status`` is the signer's answer, with ``reason`` (or ``signer auth rejected request with status N``);
- an HTTP status other than 200, a body that is not JSON, or no positive ``status`` is the webhook failing: the
  signer answers 500 (``Internal Server Error``), failing closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lpnode.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 1024 * 1024


class WebhookRefused(Exception):
    """The webhook said no (``status`` is its status) or failed (500); ``str()`` is the message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Authorization:
    """A webhook's yes: ``expiry`` (0: ask every time), ``auth_id`` ("" none), ``max_price`` (the raw object)."""

    expiry: int = 0
    auth_id: str = ""
    max_price: Any = None


def canonical_header(name: str) -> str:
    """Go's ``http.CanonicalHeaderKey``: ``x-request-id`` → ``X-Request-Id``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def header_map(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Request headers as Go's ``http.Header`` marshals them: canonical names, lists of values."""
    headers: dict[str, list[str]] = {}
    for name, value in items:
        headers.setdefault(canonical_header(name), []).append(value)
    return headers


def parse_webhook_headers(text: str) -> dict[str, str]:
    """``-remoteSignerWebhookHeaders 'k:v,k2:v2'``: split on commas, then the first colon, both sides trimmed;
    empty names dropped."""
    headers: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


def check_webhook_url(text: str) -> str:
    """The webhook URL, checked: ``http(s)://host...``; ConfigError otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Error setting remote signer webhook URL {text!r}: give an http:// or https:// URL")
    return text.strip()


class AuthWebhook:
    """Calls the webhook at ``url`` with the extra ``headers`` (they may hold its credentials: never logged)."""

    def __init__(self, url: str, headers: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.url = url
        self.headers = headers
        self._session = session

    async def authorize(self, incoming: dict[str, list[str]], state: dict[str, Any]) -> Authorization:
        """Ask about one payment; :class:`WebhookRefused` unless the webhook allows it."""
        headers = {"Content-Type": "application/json", **self.headers}
        body = json.dumps({"headers": incoming, "state": state}).encode()
        import aiohttp  # here: the signer's flags are read without loading the HTTP client

        try:
            async with self._session.post(
                self.url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            ) as answer:
                data = await answer.content.read(MAX_ANSWER_BYTES)
                if answer.status != 200:
                    raise WebhookRefused(500, f"signer auth error status {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WebhookRefused(500, f"failed to call remote signer webhook: {exc or type(exc).__name__}") from None
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise WebhookRefused(500, f"signer auth invalid response: {exc}") from None
        if not isinstance(parsed, dict):
            raise WebhookRefused(500, "signer auth invalid response: not an object")
        status = parsed.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or status <= 0:
            raise WebhookRefused(500, "signer auth invalid status")
        if status != 200:
            reason = parsed.get("reason")
            text = (
                reason if isinstance(reason, str) and reason else f"signer auth rejected request with status {status}"
            )
            raise WebhookRefused(status, text)
        expiry = parsed.get("expiry")
        auth_id = parsed.get("auth_id")
        return Authorization(
            expiry=expiry if isinstance(expiry, int) and not isinstance(expiry, bool) else 0,
            auth_id=auth_id if isinstance(auth_id, str) else "",
            max_price=parsed.get("maxPrice"),
        )
