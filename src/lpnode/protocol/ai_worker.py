"""The HTTP side of go-livepeer's remote AI worker protocol: job data, result uploads and their headers.

A job reaches a worker as ``NotifyAIJob{taskId, AIJobData{pipeline, requestData}}`` (over the
``net.AIWorker`` gRPC stream) where ``requestData`` is JSON ``{"input_url": URL or "", "request": {...}}``:
``request`` is the job's JSON body, or the fields of its multipart form with the file left out (blank) and
fetched from ``input_url`` instead. The worker answers with ``POST /aiResults`` carrying
``Authorization: Livepeer-AI-Worker-1.0``, ``Credentials: <orchestrator secret>``, ``TaskId`` and
``Pipeline``, and one of three bodies:

- ``multipart/mixed``: one part per result file (``Content-Disposition: attachment; filename=<name>``)
  and a JSON part holding the answer, in which each file's ``url`` is its part's file name;
- ``livepeer/ai-worker-error``: the error text (lpnode workers add ``Lpnode-Status: <HTTP status>``, the
  status the orchestrator would have answered had it run the job itself);
- ``text/event-stream``: an LLM stream, relayed as it arrives.

Everything here is a pure function of its arguments; both the orchestrator and the worker use it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from lpnode.pipelines import PIPELINES

AI_RESULTS_PATH = "/aiResults"
ERROR_CONTENT_TYPE = "livepeer/ai-worker-error"
STREAM_CONTENT_TYPE = "text/event-stream"
CREDENTIALS_HEADER = "Credentials"
TASK_ID_HEADER = "TaskId"
PIPELINE_HEADER = "Pipeline"
STATUS_HEADER = "Lpnode-Status"
INVALID_SECRET = "invalid secret"
ZERO_CAPACITY = "zero capacity"
WORKER_ID_METADATA = "lpnode-worker-id"
"""Response header an lpnode orchestrator sends as soon as it accepts a worker (its id there)."""

FILE_FIELDS: Mapping[str, str] = {name: p.file_field for name, p in PIPELINES.items() if p.file_field}
"""Pipelines whose jobs carry an uploaded file, and the form field that holds it."""


@dataclass(frozen=True)
class JobData:
    """``AIJobData.requestData``: where the input file is (``""``: none) and the request's fields."""

    input_url: str
    request: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps({"input_url": self.input_url, "request": self.request}).encode()

    @classmethod
    def decode(cls, data: bytes) -> JobData:
        """``ValueError`` saying what is wrong when ``data`` is not a job's request data."""
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"the job's requestData is not JSON: {exc}") from None
        if not isinstance(value, dict) or not isinstance(value.get("request"), dict):
            raise ValueError('the job\'s requestData must be {"input_url": ..., "request": {...}}')
        url = value.get("input_url") or ""
        if not isinstance(url, str):
            raise ValueError("the job's input_url must be a string")
        return cls(url, value["request"])


@dataclass(frozen=True)
class Part:
    """One part of a multipart body; ``headers`` have lowercase names."""

    headers: Mapping[str, str]
    data: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def filename(self) -> str:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        name = options.get(b"filename", b"")
        return name.decode("utf-8", "replace")

    @property
    def name(self) -> str:
        """The form field name (``Content-Disposition: form-data; name=...``)."""
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        return options.get(b"name", b"").decode("utf-8", "replace")


def build_multipart(
    parts: Iterable[tuple[Mapping[str, str], bytes]], subtype: str = "mixed", boundary: str = ""
) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of a ``multipart/<subtype>`` body holding ``parts`` (headers, data)."""
    boundary = boundary or secrets.token_hex(16)
    out = bytearray()
    for headers, data in parts:
        out += f"--{boundary}\r\n".encode()
        for name, value in headers.items():
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/{subtype}; boundary={boundary}", bytes(out)


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart body; ``ValueError`` when it has no boundary or does not parse."""
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not mime.startswith(b"multipart/") or not boundary:
        raise ValueError(f"expected a multipart Content-Type with a boundary, got {content_type[:80]!r}")
    collector = _PartCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart's MultipartParseError and friends
        raise ValueError(f"the multipart body is malformed: {exc}") from None
    if not collector.ended:
        raise ValueError("the multipart body is truncated (no closing boundary)")
    return collector.parts


@dataclass
class _PartCollector:
    parts: list[Part] = field(default_factory=list)
    ended: bool = False
    _field: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _headers: dict[str, str] = field(default_factory=dict)
    _data: bytearray = field(default_factory=bytearray)

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self._end,
            "on_end": self._finished,
        }

    def _begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _end(self) -> None:
        self.parts.append(Part(self._headers, bytes(self._data)))

    def _finished(self) -> None:
        self.ended = True


@dataclass(frozen=True)
class ResultFile:
    """A result file a worker uploads: ``name`` is what the answer's ``url`` says."""

    name: str
    content_type: str
    data: bytes


def build_result(answer: bytes, files: Iterable[ResultFile]) -> tuple[str, bytes]:
    """A worker's ``multipart/mixed`` result: one part per file, then the JSON ``answer``."""
    parts: list[tuple[Mapping[str, str], bytes]] = [
        (
            {
                "Content-Type": f.content_type,
                "Content-Length": str(len(f.data)),
                "Content-Disposition": f"attachment; filename={f.name}",
            },
            f.data,
        )
        for f in files
    ]
    parts.append(({"Content-Type": "application/json", "Content-Length": str(len(answer))}, answer))
    return build_multipart(parts)


@dataclass(frozen=True)
class WorkerResult:
    """A parsed ``multipart/mixed`` result: the JSON answer and the files it names, by file name."""

    answer: bytes
    files: Mapping[str, ResultFile]


def parse_result(content_type: str, body: bytes) -> WorkerResult:
    """Split a worker's ``multipart/mixed`` result (parts in any order); ``ValueError`` if it has no JSON part."""
    answer: bytes | None = None
    files: dict[str, ResultFile] = {}
    for part in parse_multipart(content_type, body):
        name = part.filename
        if name:
            files[name] = ResultFile(
                name, part.content_type.split(";")[0].strip() or "application/octet-stream", part.data
            )
        elif part.content_type.split(";")[0].strip() == "application/json":
            answer = part.data
    if answer is None:
        raise ValueError("the worker's result has no application/json part")
    return WorkerResult(answer, files)
