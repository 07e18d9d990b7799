"""A runner's error answer, as the orchestrator passes it on.

go-livepeer's orchestrator turns a runner error into the text ``<pipeline> container returned <code>:
<message>``, and go-livepeer gateways look for ``returned 400`` in it to send the caller a 400 instead of
trying another orchestrator. The same text is kept here, with the HTTP status that matches it (go-livepeer
answers 500 for all of them). A runner's validation error (422) is the caller's fault too, so it is
reported as ``returned 400``, which gateways treat as final; go-livepeer gateways would instead retry it on
every orchestrator.
"""

from __future__ import annotations

import json
from typing import Any

from lpnode.errors import (
    BadRequestError,
    JobError,
    PayloadTooLargeError,
    PipelineFailedError,
    UnavailableError,
    UnsupportedMediaError,
)

CAPACITY_MESSAGE = "insufficient capacity"


def runner_error(pipeline: str, status: int, body: bytes, retry_after: str | None = None) -> JobError:
    """The error to answer when the runner for ``pipeline`` answered ``status`` with ``body``."""
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


def error_message(body: bytes) -> str:
    """The message in a runner or gateway error body: ``{"detail": {"msg"}}``, FastAPI's validation list,
    ``{"error": {"message"}}``, or plain text (first 500 characters)."""
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
