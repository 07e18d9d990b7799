"""Turning a runner's inline results into files the gateway fetches.

Runners answer images and audio as ``data:`` URLs. For callers that send ``Authorization:
Livepeer-AI-Worker-1.0`` (gateways), each result is saved in the result store and its URL becomes
``{service}/stream/<request-id>/<file>``, one file per result. Other callers get the runner's data URLs as
they are (go-livepeer's rule for older gateways). Image-to-video frames are always encoded into one MP4
per video and answered as an image response with its URL, as go-livepeer does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lpnode.errors import PipelineFailedError
from lpnode.pipelines import PIPELINES, Results
from lpnode.results import ResultStore, decode_data_url

WORKER_AUTHORIZATION = "Livepeer-AI-Worker-1.0"
REHOSTED_PIPELINES = frozenset(name for name, p in PIPELINES.items() if p.rehosted)
"""Pipelines whose answers carry files (images, audio, video) that can be stored and served as URLs."""
VIDEO_PIPELINES = frozenset(name for name, p in PIPELINES.items() if p.results is Results.VIDEO)
"""Pipelines whose frames are always encoded into MP4s here, whoever asks."""
VIDEO_FPS = 7


def needs_rehosting(pipeline: str, worker: bool) -> bool:
    """Whether the runner's answer must be read and rewritten (else it streams through untouched)."""
    return pipeline in VIDEO_PIPELINES or (worker and pipeline in REHOSTED_PIPELINES)


INLINE_BYTES = 256 * 1024
"""Answers up to this size are re-hosted on the event loop (well under a millisecond); larger ones, and
videos, in a worker thread."""


async def store_results(pipeline: str, body: bytes, store: ResultStore, request_id: str, base_url: str) -> bytes:
    """The answer to send for the runner's 200 ``body``, with results saved under ``request_id``."""
    prefix = f"{base_url}/stream/{request_id}/"
    if len(body) <= INLINE_BYTES and pipeline not in VIDEO_PIPELINES:
        return _rehost(pipeline, body, store, request_id, prefix)
    return await asyncio.to_thread(_rehost, pipeline, body, store, request_id, prefix)


def _rehost(pipeline: str, body: bytes, store: ResultStore, request_id: str, prefix: str) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        raise PipelineFailedError(f"{pipeline} container returned a body that is not JSON") from None
    if not isinstance(data, dict):
        raise PipelineFailedError(f"{pipeline} container returned an unexpected answer")
    try:
        if pipeline in VIDEO_PIPELINES:
            data = {"images": _videos(data, store, request_id, prefix)}
        elif "audio" in data:  # text-to-speech: {"audio": {"url": ...}}
            audio = data.get("audio")
            if isinstance(audio, dict) and isinstance(audio.get("url"), str):
                audio["url"] = prefix + store.save_data_url(request_id, audio["url"])
        else:
            for image in data.get("images") or []:
                if isinstance(image, dict) and isinstance(image.get("url"), str) and image["url"].startswith("data:"):
                    image["url"] = prefix + store.save_data_url(request_id, image["url"])
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise PipelineFailedError(f"could not store the {pipeline} result: {exc}") from None
    return json.dumps(data).encode()


def _videos(data: dict[str, Any], store: ResultStore, request_id: str, prefix: str) -> list[dict[str, Any]]:
    from lpnode.mp4 import encode_mp4  # PyAV: the media extra, checked at start (install_check)

    videos = []
    for frames in data.get("frames") or []:
        if not frames:
            continue
        images = [decode_data_url(frame["url"])[1] for frame in frames]
        name = store.save(request_id, encode_mp4(images, fps=VIDEO_FPS), "mp4")
        first = frames[0]
        videos.append({"url": prefix + name, "seed": first.get("seed", 0), "nsfw": bool(first.get("nsfw", False))})
    if not videos:
        raise ValueError("the runner returned no frames")
    return videos
