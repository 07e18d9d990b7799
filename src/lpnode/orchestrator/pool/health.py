"""Asking a runner how it is: ``GET /health`` and ``GET /version``, each bounded, never raising."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

READY_STATES = frozenset({"IDLE", "OK"})  # IDLE: loaded and free; OK: loaded and busy
UNKNOWN_VERSION = "0.0.0"  # what go-livepeer assumes when /version cannot be read


@dataclass(frozen=True)
class Health:
    """``status`` is the runner's own word (IDLE, OK, LOADING, ERROR), or None with ``problem`` set.
    ``warnings``: what an lpnode runner serves only in part (e.g. its safety checker is missing)."""

    status: str | None
    problem: str = ""
    warnings: tuple[str, ...] = ()


async def probe(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float) -> Health:
    try:
        async with session.get(
            url + "/health", headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                return Health(None, f"/health answered HTTP {response.status}")
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Health(None, f"/health did not answer within {timeout:g}s" if _is_timeout(exc) else f"/health: {exc}")
    except ValueError:
        return Health(None, "/health answered something that is not JSON")
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, str):
        return Health(None, f"/health answered {str(body)[:100]!r}, not a status")
    warnings = body.get("warnings")  # lpnode's addition; ai-runner sends none
    return Health(
        status, warnings=tuple(w for w in warnings if isinstance(w, str)) if isinstance(warnings, list) else ()
    )


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError)


async def fetch_version(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout: float) -> str:
    """The runner's ``/version`` ``version`` field; ``0.0.0`` when it cannot be read, like go-livepeer."""
    try:
        async with session.get(
            url + "/version", headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                return UNKNOWN_VERSION
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return UNKNOWN_VERSION
    version = body.get("version") if isinstance(body, dict) else None
    return version if isinstance(version, str) and version else UNKNOWN_VERSION
