"""The orchestrator secret (``-orchSecret``): what remote workers, BYOC containers and their operators present
to an orchestrator. Read the same way by every role that holds it."""

from __future__ import annotations

from pathlib import Path

from lpnode.errors import ConfigError


def read_secret(value: str, what: str = "orchestrator secret") -> str:
    """``-orchSecret`` (or another secret named ``what``): the secret itself, or a file holding it (trimmed), as
    go-livepeer reads it."""
    path = Path(value).expanduser()
    if value and path.is_file():
        try:
            secret = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
        if not secret:
            raise ConfigError(f"the {what} file {path} is empty")
        return secret
    return value.strip()
