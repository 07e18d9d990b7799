"""go-livepeer's ``/getNetworkCapabilities`` and ``/getAISessionPoolsInfo`` JSON, built from what the gateway holds.

Both are the bodies go-livepeer's gateway serves on its CLI port, which operator tooling (the Livepeer tools
"network capabilities" page, Cloud SPE's testers) reads. go-livepeer renders them with Go's ``encoding/json``
over its structs and the ``protoc-gen-go`` message structs, so that is what is reproduced here:

- proto fields keep their ``.proto`` names (``pricePerUnit``, ``PerCapability``, ``gpu_info``) in declaration
  order, with ``omitempty``: false, 0, "", empty lists and empty maps are left out; a present but empty message
  is ``{}``;
- 64-bit integers are JSON numbers (protobuf's own JSON mapping would make them strings); bytes are base64;
- map keys are strings, sorted as strings (``"10"`` before ``"9"``), as Go sorts them;
- the non-proto wrapper fields have no ``omitempty``: an absent message or empty list there is ``null``.

The functions return plain dicts in that key order; ``go_json`` writes them as Go's text byte for byte (Go's
float format and its HTML-safe string escaping), for callers that want exact parity rather than equal JSON.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from Crypto.Hash import keccak
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo

CAPABILITY_NAMES: Mapping[int, str] = MappingProxyType(
    {
        -2: "Invalid",
        -1: "Unused",
        0: "H.264",
        1: "MPEGTS",
        2: "MP4",
        3: "Fractional framerates",
        4: "Storage direct",
        5: "Storage S3",
        6: "Storage GCS",
        7: "H264 Baseline profile",
        8: "H264 Main profile",
        9: "H264 High profile",
        10: "H264 Constrained, Contained High profile",
        11: "GOP",
        12: "Auth token",
        # 13 (deprecated scene classification) has no name, so go-livepeer's map has no "13" key.
        14: "MPEG7 signature",
        15: "HEVC decode",
        16: "HEVC encode",
        17: "VP8 decode",
        18: "VP9 decode",
        19: "VP8 encode",
        20: "VP9 encode",
        21: "H264 Decode YUV444 8-bit",
        22: "H264 Decode YUV422 8-bit",
        23: "H264 Decode YUV444 10-bit",
        24: "H264 Decode YUV422 10-bit",
        25: "H264 Decode YUV420 10-bit",
        26: "Segment slicing",
        27: "Text to image",
        28: "Image to image",
        29: "Image to video",
        30: "Upscale",
        31: "Audio to text",
        32: "Segment anything 2",
        33: "Llm",
        34: "Image to text",
        35: "Live video to video",
        36: "Text to speech",
        37: "byoc",
    }
)
"""go-livepeer's ``core.CapabilityNameLookup``: capability number -> display name (spelling is upstream's)."""

ZERO_ADDRESS = "0x" + "00" * 20
NEVER_REFRESHED = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time`` in JSON: the ``last_refresh`` of a pool that has never been refreshed."""


def eth_address_hex(raw: bytes) -> str:
    """``raw`` as go-ethereum's ``common.BytesToAddress(raw).Hex()``: last 20 bytes, zero-padded, EIP-55 case."""
    plain = raw[-20:].rjust(20, b"\0").hex()
    digest = keccak.new(digest_bits=256, data=plain.encode()).hexdigest()
    return "0x" + "".join(ch.upper() if int(digest[i], 16) >= 8 else ch for i, ch in enumerate(plain))


def _go_value(field: Any, value: Any) -> Any:  # field is a FieldDescriptor; the stubs type upb's one separately
    if field.message_type is not None:
        return go_proto_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def go_proto_json(message: Message) -> dict[str, Any]:
    """``message`` as Go's ``encoding/json`` renders the ``protoc-gen-go`` struct (see the module docstring).

    Oneofs are not handled: no message these endpoints carry has one.
    """
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if value:
                value_field = field.message_type.fields_by_name["value"]
                items = {str(k): _go_value(value_field, v) for k, v in value.items()}
                out[field.name] = dict(sorted(items.items()))
        elif field.is_repeated:
            if value:
                out[field.name] = [_go_value(field, v) for v in value]
        elif field.message_type is not None or field.has_presence:
            if message.HasField(field.name):
                out[field.name] = _go_value(field, value)
        elif value:
            out[field.name] = _go_value(field, value)
    return out


def _capability_names() -> dict[str, str]:
    return dict(sorted((str(number), name) for number, name in CAPABILITY_NAMES.items()))


def network_capabilities(orchestrators: Iterable[tuple[str, OrchestratorInfo]]) -> dict[str, Any]:
    """The ``/getNetworkCapabilities`` body for ``(url, info)`` pairs: the URL the gateway reached each
    orchestrator at, and the ``OrchestratorInfo`` it answered (fetched without capabilities, so prices and
    hardware are filled in).

    Per orchestrator, as go-livepeer's ``OrchNetworkCapabilities``: ``address`` is the ticket recipient and
    ``local_address`` the info's ``address``, both EIP-55 hex; ``orch_uri`` is the info's ``transcoder``;
    ``capabilities``, ``price_info``, ``capabilities_prices`` and ``hardware`` are the proto messages, ``null``
    when absent or empty. Differences: without ticket parameters (off-chain) ``address`` is the zero address
    where go-livepeer leaves it ``""``; an empty ``transcoder`` falls back to ``url``; the order is the input's,
    not the order replies arrived in; an empty list is ``[]`` (go-livepeer answers 500 when it has no data).
    """
    entries = []
    for url, info in orchestrators:
        recipient = info.ticket_params.recipient if info.HasField("ticket_params") else b""
        entries.append(
            {
                "address": eth_address_hex(recipient),
                "local_address": eth_address_hex(info.address),
                "orch_uri": info.transcoder or url,
                "capabilities": go_proto_json(info.capabilities) if info.HasField("capabilities") else None,
                "price_info": go_proto_json(info.price_info) if info.HasField("price_info") else None,
                "capabilities_prices": [go_proto_json(p) for p in info.capabilities_prices] or None,
                "hardware": [go_proto_json(h) for h in info.hardware] or None,
            }
        )
    return {"capabilities_names": _capability_names(), "orchestrators": entries}


@dataclass(frozen=True)
class PooledOrchestrator:
    """One orchestrator session in a pool: its URL, latency score (lower is better) and jobs in flight."""

    url: str
    latency_score: float
    in_flight: int


@dataclass(frozen=True)
class PoolSide:
    """The warm or cold side of a selector's pool: its sessions and how many are handed out right now."""

    orchestrators: Sequence[PooledOrchestrator]
    in_use: int

    @property
    def size(self) -> int:
        return len(self.orchestrators)


@dataclass(frozen=True)
class PoolSnapshot:
    """One ``"<capability>_<model>"`` selector: its pools, last refresh (Unix seconds, 0 = never) and the
    suspended orchestrators (URL -> refresh count until which each is skipped) with the current count."""

    warm: PoolSide
    cold: PoolSide
    last_refresh: float
    suspended: Mapping[str, int]
    current_count: int


def rfc3339(timestamp: float) -> str:
    """Unix seconds as Go's ``time.Time`` JSON (RFC 3339, trailing fraction zeros dropped), in UTC.

    0 or less is Go's zero time, ``NEVER_REFRESHED``.
    """
    if timestamp <= 0:
        return NEVER_REFRESHED
    moment = datetime.fromtimestamp(timestamp, UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0").rstrip(".")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _pool_side(side: PoolSide) -> dict[str, Any]:
    sessions = [
        {
            "url": o.url,
            "latency_score": o.latency_score if math.isfinite(o.latency_score) else None,
            "in_flight": o.in_flight,
        }
        for o in side.orchestrators
    ]
    return {"size": side.size, "in_use": side.in_use, "orchestrators": sessions or None}


def session_pools_info(pools: Mapping[str, PoolSnapshot]) -> dict[str, Any]:
    """The ``/getAISessionPoolsInfo`` body: per selector key, ``cold`` and ``warm`` pools, ``last_refresh`` and
    ``suspended``, as go-livepeer's ``aiOrchestratorPools`` (so an empty pool's ``orchestrators`` is ``null``).

    Differences: times are UTC where go-livepeer uses the gateway's local zone, with microsecond precision; a
    non-finite latency score is ``null`` (Go's encoder would fail the whole response); keys are sorted.
    """
    return {
        key: {
            "cold": _pool_side(pool.cold),
            "warm": _pool_side(pool.warm),
            "last_refresh": rfc3339(pool.last_refresh),
            "suspended": {"list": dict(sorted(pool.suspended.items())), "current_count": pool.current_count},
        }
        for key, pool in sorted(pools.items())
    }


def _go_float(value: float) -> str:
    # strconv.AppendFloat(f, 'f' or 'e', -1, 64) as encoding/json picks it, with its "e-07" -> "e-7" cleanup.
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == 0 or 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(repr(value)), "f")  # repr's shortest digits, written out without an exponent
        return text.removesuffix(".0")
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    power = exponent + len(digits) - 1
    power_text = f"-{-power}" if -10 < power < 0 else f"{'-' if power < 0 else '+'}{abs(power):02d}"
    return f"{'-' if sign else ''}{mantissa}e{power_text}"


def _go_string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        quoted = quoted.replace(raw, escaped)
    return quoted.replace("\u2029", "\\u2029")


def go_json(value: object) -> bytes:
    """``value`` (dicts, lists, strings, numbers, booleans, ``None``) as Go's ``json.Marshal`` writes it: compact,
    keys in the dict's order, Go's float format, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped."""
    return _go_text(value).encode()


def _go_text(value: object) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_go_string(str(k))}:{_go_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_go_text(v) for v in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")
