"""go-livepeer's command-line flags: the one table of every flag its starter takes, and how lpnode reads them.

Every flag of go-livepeer's ``cmd/livepeer`` (``starter/flags.go`` and ``livepeer.go``, version 0.9) is in
:data:`FLAGS` with its Go type and the lpnode commands (``orchestrator``, ``gateway``, ``worker``, ``signer``)
in which it takes effect. A flag given to a command it has no effect in is dropped with one warning line saying why
(:func:`ignored_line`); a name that is not a go-livepeer flag is a :class:`~lpnode.errors.ConfigError` naming the
closest one (:func:`unknown_flag`).

Spellings are Go's ``flag`` package's: ``-name value``, ``-name=value``, ``--name`` and ``--name=value``; a bool
flag is ``-name`` (true) or ``-name=VALUE`` with VALUE one of 1, 0, t, f, true, false (any case), never
``-name VALUE``. :func:`role_args` rewrites a role command's go-style flags into the one spelling its parser
reads (``-name=value``); :mod:`lpnode.go_starter` runs a whole go-livepeer command line (``lpnode livepeer``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lpnode.errors import ConfigError
from lpnode.protocol.go_duration import parse_go_duration

ORCHESTRATOR = "orchestrator"
GATEWAY = "gateway"
WORKER = "worker"
SIGNER = "signer"
ROLE_COMMANDS = (ORCHESTRATOR, GATEWAY, WORKER, SIGNER)

BOOL, STRING, INT, FLOAT, DURATION = "bool", "string", "int", "float", "duration"

_O, _G, _W = frozenset({ORCHESTRATOR}), frozenset({GATEWAY}), frozenset({WORKER})
_OG, _OW, _GW, _OGW = _O | _G, _O | _W, _G | _W, _O | _G | _W
_S = frozenset({SIGNER})  # lpnode signer: go-livepeer's -remoteSigner node
_NONE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GoFlag:
    """One go-livepeer flag. ``roles``: the lpnode commands it takes effect in. ``why``: what the warning says
    when it is given where it takes no effect (empty: the generic "another role's flag" line)."""

    name: str
    kind: str
    roles: frozenset[str]
    why: str = ""


def _group(kind: str, names: str, roles: frozenset[str] = _NONE, why: str = "") -> list[GoFlag]:
    return [GoFlag(name, kind, roles, why) for name in names.split()]


_VIDEO = "lpnode does not transcode video"
_SELECTION = "the gateway orders orchestrators with --selection (latency, go-livepeer, stake)"
_CHAIN_TUNING = "lpnode sets its transactions' gas, timeouts and polling itself"
_TELEMETRY = "lpnode reports through /metrics (Prometheus) and its log only"
_LIVE_EXTRAS = "lpnode's live video has no such setting"
_PRICES = "AI prices come from aiModels.json (price_per_unit, pixels_per_unit, currency)"

_TABLE: list[GoFlag] = [
    # Roles (go-livepeer's precedence: redeemer > remoteSigner > orchestrator > transcoder > aiWorker > gateway)
    GoFlag("orchestrator", BOOL, _O),
    GoFlag("gateway", BOOL, _G),
    GoFlag("broadcaster", BOOL, _G),
    GoFlag("aiWorker", BOOL, _OW),
    GoFlag("transcoder", BOOL, _NONE, _VIDEO),
    GoFlag("redeemer", BOOL, _NONE, "an lpnode orchestrator redeems its own winning tickets"),
    GoFlag("remoteSigner", BOOL, _S),
    GoFlag("reward", BOOL, _O),
    GoFlag("initializeRound", BOOL, _O),
    GoFlag("initializeRoundMaxDelay", DURATION, _NONE, "lpnode does not initialize rounds"),
    # Network and addresses
    GoFlag("network", STRING, _OGW | _S),
    GoFlag("cliAddr", STRING, _OG, "remote AI workers and signers have no CLI API"),
    GoFlag("httpAddr", STRING, _OG | _S),
    GoFlag("serviceAddr", STRING, _O),
    GoFlag("orchAddr", STRING, _GW | _S),
    GoFlag("orchWebhookUrl", STRING, _G | _S),
    GoFlag("orchSecret", STRING, _OW),
    GoFlag("dataDir", STRING, _OGW | _S),
    GoFlag("datadir", STRING, _OGW | _S),  # go-livepeer's deprecated spelling of -dataDir
    GoFlag("httpIngest", BOOL, _NONE, "the gateway always serves the AI routes"),
    GoFlag("gatewayHost", STRING, _NONE, "the gateway's result URLs come from --public-url"),
    GoFlag("nodes", STRING, _NONE, "lpnode advertises one service address"),
    GoFlag("extraNodes", INT, _NONE, "lpnode advertises one service address"),
    GoFlag("startupAvailabilityCheck", BOOL, _NONE, "lpnode does not probe its own service address at start"),
    GoFlag("authWebhookUrl", STRING, _NONE, "lpnode has no auth webhook; the gateway checks API keys (--auth keys)"),
    *_group(
        STRING,
        "rtmpAddr verifierUrl verifierPath transcodingOptions netint recordStore FVfailGsbucket FVfailGskey",
        why=_VIDEO,
    ),
    *_group(BOOL, "localVerify currentManifest testTranscoder hevcDecoding", why=_VIDEO),
    GoFlag("maxAttempts", INT, _NONE, _VIDEO),
    GoFlag("maxSessions", STRING, _NONE, "AI capacity comes from aiModels.json (capacity) and the runner slots"),
    # Gateway selection and prices
    GoFlag("maxPricePerUnit", STRING, _G | _S),
    GoFlag("maxPricePerCapability", STRING, _G | _S),
    GoFlag("pixelsPerUnit", STRING, _G | _S, _PRICES),
    *_group(STRING, "orchBlocklist orchMinLivepeerVersion orchPerfStatsUrl region", why=_SELECTION),
    *_group(FLOAT, "selectRandFreq selectStakeWeight selectPriceWeight selectPriceExpFactor", _G),
    GoFlag("minPerfScore", FLOAT, _NONE, _SELECTION),
    GoFlag("ignoreMaxPriceIfNeeded", BOOL, _NONE, "the gateway never exceeds its price caps"),
    GoFlag("discoveryTimeout", DURATION, _NONE, "the gateway asks orchestrators for offers in the background"),
    GoFlag("aiProcessingRetryTimeout", DURATION, _NONE, "the gateway's --timeout bounds a whole job, retries included"),
    GoFlag("aiServiceRegistry", BOOL, _NONE, "on chain the gateway reads the Controller's ServiceRegistry"),
    GoFlag("aiMinRunnerVersion", STRING, _NONE, "lpnode does not filter orchestrators by runner version"),
    # AI: the orchestrator's runners and remote workers
    GoFlag("aiModels", STRING, _OW),
    GoFlag("aiModelsDir", STRING, _OW),
    GoFlag("aiRunnerContainersPerGPU", INT, _OW),
    GoFlag("nvidia", STRING, _OW),
    GoFlag("aiRunnerImage", STRING, _O, "a remote AI worker starts its runners as local processes"),
    GoFlag("aiRunnerImageOverrides", STRING, _O, "a remote AI worker starts its runners as local processes"),
    GoFlag("aiVerboseLogs", BOOL, _O, "a remote AI worker's runners log to its data dir"),
    GoFlag("aiServerless", BOOL, _NONE, "a remote AI worker serves the models of its -aiModels"),
    # Live Runner (runner apps)
    GoFlag("useLiveRunners", BOOL, _O),
    GoFlag("liveRunnerConfig", STRING, _O),
    GoFlag("liveRunnerProxyUrl", STRING, _O),
    GoFlag("liveRunnerAddr", STRING, _O),
    # Live AI
    GoFlag("livePaymentInterval", DURATION, _OG),
    *_group(
        STRING,
        "mediaMTXApiPassword liveAITrickleHostForRunner liveAIAuthApiKey liveAIHeartbeatURL "
        "liveAIHeartbeatHeaders liveAIAuthWebhookUrl liveAICapRefreshModels",
        why=_LIVE_EXTRAS,
    ),
    *_group(DURATION, "liveAIHeartbeatInterval liveOutSegmentTimeout", why=_LIVE_EXTRAS),
    GoFlag("liveAICapReportInterval", DURATION, _S),
    GoFlag("liveAISaveNSegments", INT, _NONE, _LIVE_EXTRAS),
    # On chain
    *_group(STRING, "ethUrl ethController ethKeystorePath ethAcctAddr ethPassword priceFeedAddr", _OG | _S),
    GoFlag("maxGasPrice", INT, _OG | _S),
    GoFlag("ticketEV", STRING, _O),
    GoFlag("maxFaceValue", STRING, _O),
    GoFlag("maxTicketEV", STRING, _G | _S),
    GoFlag("maxTotalEV", STRING, _G | _S),
    GoFlag("depositMultiplier", INT, _G | _S),
    GoFlag("pricePerUnit", STRING, _NONE, _PRICES),
    GoFlag("pricePerGateway", STRING, _NONE, _PRICES),
    GoFlag("pricePerBroadcaster", STRING, _NONE, _PRICES),
    GoFlag("autoAdjustPrice", BOOL, _NONE, "lpnode prices AI jobs exactly as aiModels.json says"),
    GoFlag("ethOrchAddr", STRING, _NONE, _VIDEO),
    GoFlag("redeemerAddr", STRING, _NONE, "an lpnode orchestrator redeems its own winning tickets"),
    GoFlag("ignoreSenderReserve", BOOL, _NONE, "the gateway always keeps its reserve"),
    *_group(INT, "maxTransactionReplacements gasLimit minGasPrice blockPollingInterval", why=_CHAIN_TUNING),
    GoFlag("transactionTimeout", DURATION, _NONE, _CHAIN_TUNING),
    *_group(STRING, "remoteSignerUrl remoteSignerHeaders", _G),
    GoFlag("remoteDiscovery", BOOL, _S),
    *_group(STRING, "remoteSignerWebhookUrl remoteSignerWebhookHeaders", _S),
    GoFlag("remoteSignerAllowNoAuth", BOOL, _S),
    # Metrics, logs, storage
    GoFlag("monitor", BOOL, _OG, "a remote AI worker serves no /metrics"),
    GoFlag("v", STRING, _OGW | _S),
    *_group(BOOL, "metricsPerStream metricsClientIP", why=_TELEMETRY),
    *_group(
        STRING,
        "metadataQueueUri metadataAmqpExchange kafkaBootstrapServers kafkaUser kafkaPassword kafkaGatewayTopic",
        why=_TELEMETRY,
    ),
    GoFlag("metadataPublishTimeout", DURATION, _NONE, _TELEMETRY),
    GoFlag("objectStore", STRING, _NONE, "results are kept in DATA_DIR/results and served under /stream/"),
    # livepeer.go itself
    GoFlag("config", STRING, _NONE),
    GoFlag("version", BOOL, _NONE),
    GoFlag("j", BOOL, _NONE, "lpnode prints no MistServer application info"),
]

FLAGS: dict[str, GoFlag] = {flag.name: flag for flag in _TABLE}
"""Every go-livepeer flag by name (Go's names are case-sensitive)."""

# -datadir is go-livepeer's deprecated spelling; lpnode's parsers read -dataDir.
_SPELLING = {"datadir": "dataDir"}
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}
_FLAG_TOKEN = re.compile(r"^(-{1,2})([A-Za-z][A-Za-z0-9_.-]*)(=.*)?$", re.DOTALL)


def go_bool(text: str) -> bool:
    """A Go bool flag's value (``strconv.ParseBool``): 1, t, true, 0, f, false in any case."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(text)


def check_value(flag: GoFlag, value: str) -> str:
    """``value`` if it parses as the flag's Go type; a ``ConfigError`` in Go's words otherwise."""
    try:
        if flag.kind == BOOL:
            return "true" if go_bool(value) else "false"
        if flag.kind == INT:
            int(value.strip(), 0)
        elif flag.kind == FLOAT:
            float(value)
        elif flag.kind == DURATION:
            parse_go_duration(value)
    except ValueError:
        raise ConfigError(f"invalid value {value!r} for flag -{flag.name}: expected a Go {flag.kind}") from None
    return value


def unknown_flag(name: str) -> ConfigError:
    """The error for a name that is not a go-livepeer flag, naming the closest one (``difflib``)."""
    names = list(FLAGS)
    by_case = {n.lower(): n for n in names}
    close = by_case.get(name.lower()) or next(iter(difflib.get_close_matches(name, names, n=1, cutoff=0.6)), None)
    hint = f" (did you mean -{close}?)" if close else ""
    return ConfigError(f"unknown flag -{name}{hint}")


def ignored_line(flag: GoFlag, role: str) -> str:
    """The one warning line for ``flag`` given to ``role``'s command, where it takes no effect."""
    if flag.why and (not flag.roles or flag.name in _ROLE_SPECIFIC_WHY):
        return f"-{flag.name}: ignored: {flag.why}"
    article = "an" if role[0] in "aeiou" else "a"
    return f"-{flag.name}: ignored: only {_roles_text(flag.roles)} use it; this node is {article} {role}"


# Flags that work somewhere in lpnode but have a reason of their own where they do not.
_ROLE_SPECIFIC_WHY = {"cliAddr", "aiRunnerImage", "aiRunnerImageOverrides", "aiVerboseLogs", "monitor", "pixelsPerUnit"}


def _roles_text(roles: frozenset[str]) -> str:
    names = [f"{r}s" for r in ROLE_COMMANDS if r in roles]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class FlagToken:
    """A go-style flag read from a command line: its canonical name, its value (checked), and how many
    argv entries it took."""

    flag: GoFlag
    value: str
    width: int


def read_flag(argv: Sequence[str], index: int) -> FlagToken | None:
    """The go-livepeer flag at ``argv[index]`` (taking the next entry as its value when it needs one), or
    ``None`` when that entry is not a go-livepeer flag's name. A missing or malformed value is a
    ``ConfigError``."""
    match = _FLAG_TOKEN.match(argv[index])
    if match is None:
        return None
    name = match.group(2)
    flag = FLAGS.get(name)
    if flag is None:
        return None
    flag = FLAGS[_SPELLING.get(name, name)]
    inline = match.group(3)
    if inline is not None:
        return FlagToken(flag, check_value(flag, inline[1:]), 1)
    if flag.kind == BOOL:
        return FlagToken(flag, "true", 1)
    if index + 1 >= len(argv):
        raise ConfigError(f"flag needs an argument: -{name}")
    return FlagToken(flag, check_value(flag, argv[index + 1]), 2)


def flag_name(token: str) -> str | None:
    """The name in a token spelled like a flag (``-x``, ``--x``, ``-x=v``), else ``None``."""
    match = _FLAG_TOKEN.match(token)
    return match.group(2) if match else None


def role_args(role: str, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` for ``lpnode ROLE``, go-livepeer's flags in it rewritten to ``-name=value`` (what the role's
    parser reads), and the warning lines for those that take no effect in ``role`` (dropped, once each).

    lpnode's own ``--kebab-case`` options pass unchanged (the role's parser judges them). A single-dash name
    that is not a go-livepeer flag is a ``ConfigError`` naming the closest one.
    """
    out: list[str] = []
    warnings: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            out.extend(argv[index:])
            break
        if token == "-help":  # Go's spelling of -h
            out.append("-h")
            index += 1
            continue
        read = read_flag(argv, index)
        if read is None:
            name = flag_name(token)
            after_option = index > 0 and argv[index - 1].startswith("--") and "=" not in argv[index - 1]
            if name and not token.startswith("--") and not after_option and token != "-h":
                raise unknown_flag(name)
            out.append(token)
            index += 1
            continue
        flag = read.flag
        if role in flag.roles:
            out.append(f"-{flag.name}={read.value}")
        else:
            line = ignored_line(flag, role)
            if line not in warnings:
                warnings.append(line)
        index += read.width
    return out, warnings
