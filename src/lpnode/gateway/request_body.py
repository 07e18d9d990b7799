"""Request bodies as the gateway reads them: streamed in, refused as soon as they pass their limit (a chunked
upload is not read whole first), and spooled to an anonymous temporary file (in ``TMPDIR``) past
``SPOOL_BYTES``, so a large upload is held in memory once rather than in the several copies that reading it
whole, parsing it and re-encoding it would make.
"""

from __future__ import annotations

import asyncio
import mmap
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import IO

from starlette.datastructures import UploadFile

SPOOL_BYTES = 1024 * 1024
"""Bodies and uploaded files over this go to a temporary file while they are read."""
_CHUNK = 1024 * 1024


class SpooledBody:
    """A request body read with :meth:`read`: in memory up to ``SPOOL_BYTES``, in a temporary file (deleted
    when closed, or when the process ends) past that. Close it when done."""

    def __init__(self) -> None:
        self.size = 0
        self._pieces: list[bytes] = []
        self._pending = 0  # bytes in _pieces not yet written to _file
        self._file: IO[bytes] | None = None

    @classmethod
    async def read(cls, chunks: AsyncIterable[bytes], limit: int, too_large: Callable[[], Exception]) -> SpooledBody:
        """The body ``chunks`` make; ``too_large()`` is raised as soon as it passes ``limit`` bytes."""
        body = cls()
        try:
            async for chunk in chunks:
                body.size += len(chunk)
                if body.size > limit:
                    raise too_large()
                body._pieces.append(chunk)
                body._pending += len(chunk)
                if body.size > SPOOL_BYTES and body._pending >= _CHUNK:
                    await body._flush()
            if body._file is not None:
                await body._flush()
        except BaseException:
            body.close()
            raise
        return body

    async def whole(self) -> bytes:
        """The body as one ``bytes`` (one allocation)."""
        if self._file is None:
            return b"".join(self._pieces)
        file = self._file
        file.seek(0)
        return await asyncio.to_thread(file.read)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body again, a piece at a time."""
        if self._file is None:
            for piece in self._pieces:
                yield piece
            return
        file = self._file
        file.seek(0)
        while data := await asyncio.to_thread(file.read, _CHUNK):
            yield data

    def close(self) -> None:
        self._pieces = []
        if self._file is not None:
            self._file.close()
            self._file = None

    async def _flush(self) -> None:
        data, self._pieces, self._pending = b"".join(self._pieces), [], 0
        if self._file is None:
            self._file = await asyncio.to_thread(tempfile.TemporaryFile)
        await asyncio.to_thread(self._file.write, data)


async def upload_bytes(upload: UploadFile) -> bytes | mmap.mmap:
    """An uploaded file's content without an extra in-memory copy: small ones as bytes, spooled ones mapped
    from their temporary file (read-only; copy it into ``bytes`` off the event loop, then close it)."""
    if upload.size is None or upload.size <= SPOOL_BYTES:
        return await upload.read()
    await upload.seek(0)
    return mmap.mmap(upload.file.fileno(), 0, access=mmap.ACCESS_READ)
