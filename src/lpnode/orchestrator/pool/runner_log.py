"""Why a runner failed, in its own words: read from the tail of its log file.

A managed runner's log (``<data dir>/logs/<name>.log``) gathers every start of that runner, each opened by
:data:`START_MARKER`; only the last start's lines are read. The runner logs a model it cannot load as the
event ``model failed to load`` with a ``reason`` field (e.g. ``model 'org/name' is not in the models dir
...; fetch it with: lpnode models pull org/name --models-dir ...``), and a configuration it refuses as one
``lpnode: error: ...`` line before it exits.
"""

from __future__ import annotations

from pathlib import Path

from lpnode.logs import event_fields

START_MARKER = "--- lpnode pool: starting"
LOAD_FAILED_EVENT = " model failed to load "  # lpnode.runner's event, between the logger name and its fields
_CLI_ERROR = "lpnode: error: "
TAIL_BYTES = 64 * 1024


def failure_reason(log_path: Path | None) -> str:
    """The reason the runner's last start gave for failing, or ``""`` when its log says none (or cannot be
    read). Reads at most the last :data:`TAIL_BYTES` of the file; never raises."""
    if log_path is None:
        return ""
    try:
        with log_path.open("rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - TAIL_BYTES))
            tail = log.read().decode(errors="replace")
    except OSError:
        return ""
    lines = tail.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(START_MARKER):
            lines = lines[index + 1 :]
            break
    for line in reversed(lines):
        if LOAD_FAILED_EVENT in line:
            reason = event_fields(line.split(LOAD_FAILED_EVENT, 1)[1]).get("reason", "")
            if reason:
                return reason
        if line.startswith(_CLI_ERROR):
            return line.removeprefix(_CLI_ERROR).strip()
    return ""
