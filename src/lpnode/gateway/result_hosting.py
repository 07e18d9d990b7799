"""Serving results from the gateway: every result URL in an orchestrator's answer (``images[].url``,
``audio.url``) is fetched, stored in the gateway's result store and replaced by the gateway's own
``{public_url}/stream/<request-id>/<file>``, so callers never need to reach an orchestrator. ``data:`` URLs
are stored the same way. go-livepeer fetches with a 4 s timeout; this one allows 30 s per file.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from lpnode.errors import PipelineFailedError
from lpnode.results import ResultStore, extension_for

FETCH_TIMEOUT = aiohttp.ClientTimeout(total=30)
MAX_RESULT_BYTES = 512 * 1024 * 1024
INLINE_BYTES = 256 * 1024


async def host_results(
    answer: bytes, session: aiohttp.ClientSession, store: ResultStore, request_id: str, public_url: str
) -> bytes:
    try:
        data = json.loads(answer)
    except ValueError:
        raise PipelineFailedError("the orchestrator's answer is not JSON") from None
    media: list[dict[str, Any]] = []
    if isinstance(data, dict):
        media += [m for m in data.get("images") or [] if isinstance(m, dict)]
        if isinstance(data.get("audio"), dict):
            media.append(data["audio"])
    prefix = f"{public_url}/stream/{request_id}/"
    names = await asyncio.gather(*(_store(m.get("url"), session, store, request_id) for m in media))
    for item, name in zip(media, names, strict=True):
        if name is not None:
            item["url"] = prefix + name
    return json.dumps(data).encode()


async def _store(url: Any, session: aiohttp.ClientSession, store: ResultStore, request_id: str) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        if url.startswith("data:"):
            if len(url) <= INLINE_BYTES:  # small: on the loop (well under a millisecond)
                return store.save_data_url(request_id, url)
            return await asyncio.to_thread(store.save_data_url, request_id, url)
        async with session.get(url, ssl=False, timeout=FETCH_TIMEOUT) as response:
            response.raise_for_status()
            body = await response.content.read(MAX_RESULT_BYTES + 1)
            if len(body) > MAX_RESULT_BYTES:
                raise ValueError("the result is too large")
            mime = response.content_type or "application/octet-stream"
        return await asyncio.to_thread(store.save, request_id, body, extension_for(mime))
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        raise PipelineFailedError(f"could not fetch a result from the orchestrator: {exc}") from None
