"""The wire contract of one AI job hop, gateway → orchestrator (and orchestrator → remote worker), both sides.

A gateway sends ``POST {orchestrator}/{pipeline}`` with:

- ``Livepeer-Segment``: base64 (go's ``StdEncoding``) of a protobuf ``SegData`` carrying the session's
  ``auth_token`` (from ``GetOrchestrator``) and the job's ``capabilities`` (:func:`encode_segment`,
  :func:`decode_segment`; a missing or undecodable one is refused with **403**);
- ``Livepeer-Payment``: base64 of a protobuf ``Payment``; empty off-chain (:func:`decode_payment`; an
  undecodable one is refused with **402**);
- ``Authorization: Livepeer-AI-Worker-1.0`` (:data:`WORKER_AUTHORIZATION`) when it wants result files as URLs
  to fetch; without it, image and audio results come inline as ``data:`` URLs (go-livepeer's rule for older
  gateways);
- ``Lpnode-Timeout: <seconds>`` (:data:`TIMEOUT_HEADER`): the time the gateway will wait. go-livepeer
  orchestrators ignore it, so the gateway enforces its deadline itself; lpnode orchestrators also stop the job.

Error answers are go-livepeer's: plain text, and a runner's error becomes ``<pipeline> container returned
<code>: <message>`` (:func:`runner_error`), in which go-livepeer gateways look for ``returned 400`` to hand the
caller a 400 instead of trying another orchestrator. :func:`answer_error` reads any error answer back (plain
text, ai-runner's ``{"detail": {"msg"}}``, FastAPI's list, the gateway's ``{"error": {"message"}}``) into the
:mod:`lpnode.errors` class its status stands for, with the runner's own words.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf.message import DecodeError

from lpnode.errors import (
    BadRequestError,
    ForbiddenError,
    JobError,
    PayloadTooLargeError,
    PaymentRequiredError,
    PipelineFailedError,
    UnavailableError,
    UnsupportedMediaError,
    error_for_status,
)
from lpnode.protocol.capabilities import capability_bitstring, capability_for_pipeline
from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, Payment, SegData

SEGMENT_HEADER = "Livepeer-Segment"
PAYMENT_HEADER = "Livepeer-Payment"
TIMEOUT_HEADER = "Lpnode-Timeout"
WORKER_AUTHORIZATION = "Livepeer-AI-Worker-1.0"
CAPACITY_MESSAGE = "insufficient capacity"
FINAL_STATUSES = frozenset({400, 413, 415, 422})
"""Statuses that mean the input is wrong: the caller gets them, no other orchestrator is tried."""
ERROR_BODY_LIMIT = 1024 * 1024
"""The most of an error answer either side reads."""


def encode_segment(token: AuthToken, pipeline: str, model_id: str) -> str:
    """``Livepeer-Segment`` for a job: the session's token and the job's one capability with its model."""
    cap = capability_for_pipeline(pipeline)
    caps = Capabilities(bitstring=capability_bitstring([cap]))
    caps.capacities[cap] = 1
    caps.constraints.PerCapability[cap].models[model_id].warm = False
    seg = SegData(manifestId=f"{int(cap)}_{model_id}".encode(), profiles=b"invalid", capabilities=caps)
    seg.auth_token.CopyFrom(token)
    return base64.b64encode(seg.SerializeToString()).decode()


def decode_segment(value: str) -> SegData:
    """The ``SegData`` in a ``Livepeer-Segment`` value; :class:`ForbiddenError` when missing or undecodable."""
    if not value:
        raise ForbiddenError(
            "missing Livepeer-Segment header; call GetOrchestrator and send its auth_token in a base64 SegData"
        )
    segment = SegData()
    try:
        segment.ParseFromString(_b64(value))
    except (binascii.Error, ValueError, DecodeError):
        raise ForbiddenError(
            "could not decode the Livepeer-Segment header; send base64 of a protobuf SegData"
        ) from None
    return segment


def decode_payment(value: str) -> Payment:
    """The ``Payment`` in a ``Livepeer-Payment`` value (empty: an empty payment, as off-chain gateways send);
    :class:`PaymentRequiredError` when undecodable."""
    payment = Payment()
    try:
        payment.ParseFromString(_b64(value))
    except (binascii.Error, ValueError, DecodeError):
        raise PaymentRequiredError(
            "could not decode the Livepeer-Payment header; send base64 of a protobuf Payment, or an empty header "
            "off-chain"
        ) from None
    return payment


def timeout_value(seconds: float) -> str:
    """The ``Lpnode-Timeout`` value for ``seconds`` left (never below 0.1 s)."""
    return f"{max(0.1, seconds):.3f}"


def read_timeout(value: str | None) -> float | None:
    """Seconds in an ``Lpnode-Timeout`` value (``None`` when absent); :class:`BadRequestError` when unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise BadRequestError(f"{TIMEOUT_HEADER.lower()} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise BadRequestError(f"{TIMEOUT_HEADER.lower()} must be positive, got {value!r}")
    return seconds


def runner_error(pipeline: str, status: int, body: bytes, retry_after: str | None = None) -> JobError:
    """What an orchestrator answers when the runner for ``pipeline`` answered ``status`` with ``body``: go-livepeer's
    ``<pipeline> container returned <code>: <message>``, with a status that matches it (go-livepeer answers 500 for
    all). A runner's validation error (422) is the caller's fault too, so it is written ``returned 400``, which
    gateways treat as final (go-livepeer gateways would retry it on every orchestrator)."""
    message = error_message(body) or f"HTTP {status}"
    if status in (400, 422):
        return BadRequestError(f"{pipeline} container returned 400: {message}")
    if status == 413:
        return PayloadTooLargeError(f"{pipeline} container returned 413: {message}")
    if status == 415:
        return UnsupportedMediaError(f"{pipeline} container returned 415: {message}")
    if status in (401, 403):
        return PipelineFailedError(
            f"{pipeline} container returned {status}: it refused this orchestrator's credentials; "
            "check the token of its aiModels.json entry"
        )
    if status in (429, 503):
        return UnavailableError(CAPACITY_MESSAGE, retry_after=_seconds(retry_after))
    return PipelineFailedError(f"{pipeline} container returned {status}: {message}")


def answer_error(status: int, body: bytes, retry_after: str | None = None) -> JobError:
    """The error an orchestrator's ``status`` answer stands for, its message in the runner's own words."""
    return error_for_status(status, runner_words(error_message(body)), _seconds(retry_after) if retry_after else None)


def runner_words(message: str) -> str:
    """The runner's own words from ``<pipeline> container returned 400: <msg>`` (go-livepeer's text for the
    caller's mistake); any other message as it is."""
    marker = " returned 400:"
    return message.split(marker, 1)[1].strip() if marker in message else message


def error_message(body: bytes) -> str:
    """The message in an error body: ``{"detail": {"msg"}}``, FastAPI's validation list, ``{"error":
    {"message"}}``, or plain text (first 500 characters)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    return _message_in(data) or text[:500]


def _message_in(data: Any) -> str:
    if isinstance(data, dict):
        detail = data.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("msg"), str):
            return str(detail["msg"])
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            return "; ".join(_validation_item(item) for item in detail)
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return ""


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", ""))


def _seconds(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _b64(text: str) -> bytes:
    """Standard base64 (go's ``StdEncoding``), tolerating missing padding and URL-safe characters."""
    text = text.strip()
    if not text:
        return b""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
