"""Structured logging: one line per event, ``key=value`` fields, never a secret."""

from __future__ import annotations

import logging
import sys
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


def configure_logging(level: str = "info") -> None:
    """Send lpnode's (and uvicorn's) logs to stderr, one line per event."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EventFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured fields, e.g. ``log_event(log, "model loaded", seconds=1.2)``."""
    logger.log(level, event, extra={"fields": fields})


def command_log_level(level: str, verbosity: int | None) -> str:
    """A command's log level: ``--log-level``, unless go-livepeer's ``-v N`` is given (5 or more: debug)."""
    if verbosity is not None:
        return "debug" if verbosity >= 5 else "info"
    return level
