"""Structured logging: one line per event, ``key=value`` fields, never a secret."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

_SECRET_KEYS = frozenset({"token", "auth_token", "secret", "authorization", "password"})


class _EventFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            record.levelname.lower(),
            record.name,
            record.getMessage(),
        ]
        for key, value in fields.items():
            shown = "***" if key.lower() in _SECRET_KEYS else value
            text = str(shown)
            if not text or any(c in text for c in ' "='):
                text = '"' + text.replace('"', '\\"') + '"'
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _SiblingServerFilter(logging.Filter):
    """Drops a uvicorn info line identical to one shown in the last ``window`` seconds. A process serving
    several ports (the gateway's public and admin APIs) runs one uvicorn server per port, and each says
    "Started server process [pid]", "Shutting down", ... about the same process: once is enough."""

    def __init__(self, window: float = 5.0) -> None:
        super().__init__()
        self.window = window
        self._shown: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "uvicorn.error" or record.levelno > logging.INFO:
            return True
        text, now = record.getMessage(), time.monotonic()
        shown_at = self._shown.get(text)
        if shown_at is not None and now - shown_at < self.window:
            return False
        self._shown = {t: at for t, at in self._shown.items() if now - at < self.window}
        self._shown[text] = now
        return True


def configure_logging(level: str = "info") -> None:
    """Send lpnode's (and uvicorn's) logs to stderr, one line per event; uvicorn's start and stop lines
    are shown once per process even when it runs several servers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EventFormatter())
    handler.addFilter(_SiblingServerFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through the one handler above, whatever set them
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True


_FIELD = re.compile(r'([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def event_fields(text: str) -> dict[str, str]:
    """The ``key=value`` fields of a line this module wrote (what follows the event's message), quotes
    removed: ``event_fields('reason="no such file" code=2')`` is ``{"reason": "no such file", "code": "2"}``."""
    fields = {}
    for key, raw in _FIELD.findall(text):
        fields[key] = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    return fields


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured fields, e.g. ``log_event(log, "model loaded", seconds=1.2)``."""
    logger.log(level, event, extra={"fields": fields})


def command_log_level(level: str, verbosity: int | None) -> str:
    """A command's log level: ``--log-level``, unless go-livepeer's ``-v N`` is given (5 or more: debug)."""
    if verbosity is not None:
        return "debug" if verbosity >= 5 else "info"
    return level
