"""Finding a job's ``model_id`` without holding its whole body.

The orchestrator must know the model before it can pick a runner, but the model id is inside the body:
a JSON field, or a multipart form field that may come before or after the uploaded file. JSON bodies are
small and read whole. Multipart bodies are parsed as they arrive, only until the ``model_id`` part ends;
what was read so far is kept and sent to the runner first, then the rest of the body streams through
untouched. Nothing is re-encoded: the runner gets the caller's exact bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from lpnode.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaError

MAX_PREFIX_BYTES = 64 * 1024 * 1024
"""Most bytes held while looking for the model id (a JSON body, or a form whose model_id comes last)."""


@dataclass
class JobBody:
    """``prefix`` (already read) followed by ``rest`` is the whole body, byte for byte."""

    model_id: str
    prefix: list[bytes]
    rest: AsyncIterator[bytes] | None = None
    json_body: dict[str, object] | None = field(default=None, repr=False)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.prefix:
            yield chunk
        if self.rest is not None:
            async for chunk in self.rest:
                if chunk:
                    yield chunk


async def read_model_id(
    content_type: str, stream: AsyncIterator[bytes], limit: int = MAX_PREFIX_BYTES, json_field: str = "model_id"
) -> JobBody:
    """Read ``stream`` until the model id is known. ``model_id`` is ``""`` when the body has none. A JSON
    body names it in ``json_field`` (``model`` for llm, as go-livepeer reads it)."""
    mime, options = parse_options_header(content_type)
    if mime == b"application/json":
        return await _json_body(stream, limit, json_field)
    if mime == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequestError("the multipart Content-Type has no boundary")
        return await _multipart_body(boundary, stream, limit)
    shown = mime.decode("latin-1") or "none"
    raise UnsupportedMediaError(f"unsupported Content-Type {shown}; send application/json or multipart/form-data")


async def _json_body(stream: AsyncIterator[bytes], limit: int, json_field: str) -> JobBody:
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the JSON body is over {limit // (1024 * 1024)} MiB")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the JSON body must be an object")
    model_id = body.get(json_field) or body.get("model_id") or ""
    if not isinstance(model_id, str):
        raise BadRequestError(f"{json_field} must be a string")
    return JobBody(model_id, chunks, json_body=body)


class _ModelIdFinder:
    """Multipart parser callbacks that collect the value of the ``model_id`` part."""

    def __init__(self) -> None:
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.in_model_id = False
        self.value = bytearray()
        self.found = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self.in_model_id = False

    def _header_end(self) -> None:
        if bytes(self.header_field).lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self.header_value))
            self.in_model_id = options.get(b"name") == b"model_id"
        self.header_field.clear()
        self.header_value.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_model_id:
            self.value.extend(data[start:end])

    def _part_end(self) -> None:
        if self.in_model_id:
            self.found = True
            self.in_model_id = False


async def _multipart_body(boundary: bytes, stream: AsyncIterator[bytes], limit: int) -> JobBody:
    finder = _ModelIdFinder()
    parser = MultipartParser(boundary, finder.callbacks())  # type: ignore[arg-type]
    chunks: list[bytes] = []
    size = 0
    iterator = stream.__aiter__()
    async for chunk in iterator:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"model_id was not found in the first {limit // (1024 * 1024)} MiB of the form; "
                "send the model_id field before the files"
            )
        chunks.append(chunk)
        try:
            parser.write(chunk)
        except Exception as exc:  # python-multipart's MultipartParseError and friends
            raise BadRequestError(f"the multipart body is malformed: {exc}") from None
        if finder.found:
            return JobBody(_text(finder.value), chunks, iterator)
    return JobBody(_text(finder.value) if finder.found else "", chunks)


def _text(value: bytearray) -> str:
    try:
        return bytes(value).decode().strip()
    except UnicodeDecodeError:
        raise BadRequestError("model_id is not valid UTF-8") from None
