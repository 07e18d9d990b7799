"""``lpnode livepeer``: run a go-livepeer start line unchanged, only the binary's name changed.

The role comes from go-livepeer's role flags with its precedence (redeemer > remoteSigner > orchestrator >
transcoder > aiWorker > gateway/broadcaster) and picks the lpnode command that runs: ``-orchestrator`` runs
``lpnode orchestrator`` (with its own runners only with ``-aiWorker``, as in go-livepeer; without it, the models
are served by remote AI workers), ``-remoteSigner`` ``lpnode signer``, ``-aiWorker`` alone ``lpnode worker``,
``-gateway`` or ``-broadcaster`` ``lpnode gateway``. Flags come, as in go-livepeer, from the command line, then
``LP_<NAME>`` environment variables, then the ``-config`` file (``name value`` lines); the first that sets a flag wins.

Each flag that takes effect in the chosen command is passed to it; each that does not is dropped with one
warning line (:func:`lpnode.go_flags.ignored_line`). lpnode's own ``--kebab-case`` options may follow and pass
through to the command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.go_flags import (
    BOOL,
    FLAGS,
    GATEWAY,
    ORCHESTRATOR,
    SIGNER,
    WORKER,
    check_value,
    flag_name,
    go_bool,
    ignored_line,
    read_flag,
    unknown_flag,
)

ENV_PREFIX = "LP_"
# Flags the starter itself reads; they are never passed on.
_STARTER = {"config", "version", "redeemer", "remoteSigner", "transcoder", "orchestrator", "gateway",
            "broadcaster", "aiWorker"}  # fmt: skip


@dataclass
class StartLine:
    """What ``lpnode livepeer`` runs: ``argv`` for :func:`lpnode.cli.main` (the command first) and the warning
    lines to print before it starts."""

    argv: list[str]
    warnings: list[str] = field(default_factory=list)


def start_line(argv: Sequence[str], environ: Mapping[str, str]) -> StartLine:
    """Read a go-livepeer command line; every problem is a one-line ``ConfigError`` (exit status 2)."""
    values, extra = _command_line(argv)
    if "h" in values:
        return StartLine(["livepeer", "--help"])
    if go_bool(values.get("version", "false")):
        return StartLine(["--version"])
    for name, flag in FLAGS.items():  # LP_AIMODELS=... as go-livepeer's ff reads them
        text = environ.get(ENV_PREFIX + name.upper())
        if text is not None and name not in values:
            values[name] = check_value(flag, text)
    if values.get("config"):
        for name, value in _config_file(values["config"]).items():
            values.setdefault(name, value)
    if "datadir" in values:
        values.setdefault("dataDir", values.pop("datadir"))
    role = _role(values)
    out = [role]
    warnings: list[str] = []
    for name, value in values.items():
        flag = FLAGS[name]
        if name == "transcoder" and go_bool(value):
            warnings.append(ignored_line(flag, role))
        elif name in _STARTER:
            continue
        elif role in flag.roles:
            out.append(f"-{name}={value}")
        else:
            warnings.append(ignored_line(flag, role))
    if role == ORCHESTRATOR:
        out.append(f"-aiWorker={values.get('aiWorker', 'false')}")  # go-livepeer: no local runners without it
    return StartLine([*out, *extra], warnings)


def _command_line(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """go-livepeer's flags (the last of a name wins, as in Go) and lpnode's ``--kebab-case`` options."""
    values: dict[str, str] = {}
    extra: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in ("-h", "-help", "--help"):
            return {"h": "true"}, []
        read = read_flag(argv, index)
        if read is not None:
            values[read.flag.name] = read.value
            index += read.width
            continue
        name = flag_name(token)
        if name is None:
            raise ConfigError(f"unexpected argument {token!r}: go-livepeer flags only (-name value or -name=value)")
        if not token.startswith("--") or ("-" not in name and not name.islower()):
            raise unknown_flag(name)  # -serviceAdr, --serviceAdr: a go-livepeer flag mistyped
        # lpnode's own option (and its value, when it takes one as the next entry)
        extra.append(token)
        if "=" not in token and index + 1 < len(argv) and flag_name(argv[index + 1]) is None:
            extra.append(argv[index + 1])
            index += 1
        index += 1
    return values, extra


def _config_file(path: str) -> dict[str, str]:
    """go-livepeer's ``-config`` file: one ``name value`` per line, ``#`` comments; a bool alone means true."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"-config {path}: cannot read it ({exc.strerror or exc})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        name = name.lstrip("-")
        flag = FLAGS.get(name)
        if flag is None:
            raise ConfigError(f"-config {path} line {number}: {unknown_flag(name)}")
        value = value.strip() or ("true" if flag.kind == BOOL else "")
        values[name] = check_value(flag, value)
    return values


def _role(values: Mapping[str, str]) -> str:
    def on(name: str) -> bool:
        return go_bool(values.get(name, "false"))

    if on("redeemer"):
        raise ConfigError("-redeemer: lpnode has no ticket redemption service; an lpnode orchestrator redeems its "
                          "own winning tickets")  # fmt: skip
    if on("remoteSigner"):
        return SIGNER
    if on("orchestrator"):
        return ORCHESTRATOR
    if on("transcoder"):
        raise ConfigError("-transcoder: lpnode does not transcode video; -aiWorker serves an orchestrator's AI jobs")
    if on("aiWorker"):
        return WORKER
    if on("gateway") or on("broadcaster"):
        return GATEWAY
    raise ConfigError("no role given: add -orchestrator, -gateway or -aiWorker, as go-livepeer needs one")
