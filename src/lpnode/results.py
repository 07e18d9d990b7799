"""Where AI job results are kept, and the ``GET /stream/<request_id>/<name>`` route that serves them.

Runners answer images and audio as ``data:`` URLs; the orchestrator saves each one as a file under
``<root>/<request_id>/<name>`` and answers the URL ``{serviceURI}/stream/<request_id>/<name>``, which gateways
fetch and save in their own store the same way, to serve it to their callers. Every saved file gets its own
random name, so several images of one response never
overwrite each other. A request's directory expires ``ttl_seconds`` after its last change (its mtime) and is then
neither served nor kept: :meth:`ResultStore.sweep` deletes it.

Request ids and file names are checked against strict patterns before they touch the filesystem, so no id or name
can point outside the request's directory; a bad one is a :class:`ValueError` when saving and "not found" when
serving.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger("lpnode.results")

NOT_FOUND_TEXT = "result not found (it may have expired)"
CACHE_CONTROL = "private, max-age=600"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_NAME = re.compile(r"[0-9a-f]{16}\.[a-z0-9]{1,8}")
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_MIME_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/mpeg": "mp3",
    "video/mp4": "mp4",
}
_CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "wav": "audio/wav"}
_CONTENT_TYPES |= {"mp3": "audio/mpeg", "mp4": "video/mp4"}


def new_request_id() -> str:
    """A fresh random request id: 16 lowercase hex characters (64 bits), safe in a URL path."""
    return secrets.token_hex(8)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """``data:<mime>[;param...];base64,<payload>`` → ``(mime, bytes)``; anything else is a :class:`ValueError`.

    The mime type is lowercased; an empty one is ``application/octet-stream``.
    """
    shown = url[:40] + ("..." if len(url) > 40 else "")
    if not url.startswith("data:"):
        raise ValueError(f"expected a data: URL (data:<mime>;base64,...), got {shown!r}")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ValueError(f"data URL has no ',' before its data: {shown!r}")
    mime, *params = (part.strip() for part in header.split(";"))
    if not params or params[-1].lower() != "base64":
        raise ValueError(f"data URL must be base64-encoded (data:<mime>;base64,...), got {shown!r}")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data URL payload is not valid base64 ({exc}): {shown!r}") from None
    if not data:
        raise ValueError(f"data URL has no data: {shown!r}")
    return mime.lower() or "application/octet-stream", data


def extension_for(mime: str) -> str:
    """The file extension results of this mime type are saved with; ``bin`` for unknown types."""
    return _MIME_EXTENSIONS.get(mime.strip().lower(), "bin")


def content_type(name: str) -> str:
    """The ``Content-Type`` a saved file is served with, from its extension."""
    return _CONTENT_TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream")


class ResultStore:
    """Result files under ``root/<request_id>/<name>``, each request directory kept ``ttl_seconds`` after its
    last change. ``clock`` gives the current time in the same epoch as file mtimes."""

    def __init__(self, root: Path, *, ttl_seconds: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    new_request_id = staticmethod(new_request_id)

    def save(self, request_id: str, data: bytes, extension: str) -> str:
        """Write ``data`` atomically as a new file of this request and return its name, ``<16 hex>.<extension>``."""
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError(f"invalid request id {request_id[:80]!r}: use 1-64 letters, digits, '-' or '_'")
        if not _EXTENSION.fullmatch(extension):
            raise ValueError(f"invalid file extension {extension[:80]!r}: use 1-8 lowercase letters or digits")
        folder = self.root / request_id
        for _ in range(2):  # a sweep may remove the directory between mkdir and the temp file; once is enough
            folder.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
                break
            except FileNotFoundError:
                continue
        else:
            raise OSError(f"result directory {folder} keeps disappearing")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            while True:
                name = f"{secrets.token_hex(8)}.{extension}"
                if not (folder / name).exists():
                    break
            os.replace(tmp, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return name

    def save_data_url(self, request_id: str, url: str) -> str:
        """Decode a base64 ``data:`` URL and save it with the extension of its mime type; returns the file name."""
        mime, data = decode_data_url(url)
        return self.save(request_id, data, extension_for(mime))

    def path(self, request_id: str, name: str) -> Path | None:
        """The saved file, or ``None`` if the id or name is invalid, the file is missing or its request expired."""
        if not (_REQUEST_ID.fullmatch(request_id) and _NAME.fullmatch(name)):
            return None
        folder = self.root / request_id
        try:
            if self._expired(folder.stat().st_mtime) or not (folder / name).is_file():
                return None
        except OSError:
            return None
        return folder / name

    def sweep(self) -> int:
        """Delete expired request directories and return how many; files deleted meanwhile are not an error."""
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False) or not self._expired(entry.stat().st_mtime):
                    continue
                for child in os.scandir(entry.path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(child.path)
                os.rmdir(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:  # e.g. a save added a file just now: the directory is live again
                log.debug("result directory %s not swept: %s", entry.path, exc)
                continue
            removed += 1
        return removed

    def start_sweeper(self, interval: float = 60.0) -> asyncio.Task[None]:
        """Sweep every ``interval`` seconds in a worker thread until the returned task is cancelled."""
        return asyncio.get_running_loop().create_task(self._sweep_forever(interval), name="result-sweeper")

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.sweep)
                if removed:
                    log.debug("swept %d expired result directories", removed)
            except OSError as exc:
                log.warning("sweeping results in %s failed: %s", self.root, exc)
            await asyncio.sleep(interval)

    def _expired(self, mtime: float) -> bool:
        return self._clock() - mtime > self.ttl_seconds


def stream_route(store: ResultStore) -> Route:
    """``GET``/``HEAD /stream/{request_id}/{name}``: the saved file, or 404 ``result not found (it may have
    expired)``."""

    async def serve(request: Request) -> Response:
        request_id, name = request.path_params["request_id"], request.path_params["name"]
        path = await asyncio.to_thread(store.path, request_id, name)
        if path is None:
            return PlainTextResponse(NOT_FOUND_TEXT, status_code=404)
        return FileResponse(path, media_type=content_type(name), headers={"Cache-Control": CACHE_CONTROL})

    return Route("/stream/{request_id}/{name}", serve, methods=["GET", "HEAD"], name="stream_result")
