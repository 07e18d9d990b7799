"""Reading ``POST /generate-live-payment``'s body as go-livepeer's ``encoding/json`` reads it.

Keys match case-insensitively (``ManifestID``, ``manifestid``), unknown keys are ignored, byte fields are padded
base64, and every problem is a :class:`RequestError` with a message in the style of Go's decoder (``invalid
character ...``, ``json: cannot unmarshal ...``, ``illegal base64 data ...``, ``proto: ...``), answered with 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from lpnode.protocol.lp_rpc_pb2 import Capabilities, OrchestratorInfo
from lpnode.protocol.remote_signer import SignedState, fold_keys

PROTO_ERROR = "proto: cannot parse invalid wire-format data"


class RequestError(ValueError):
    """The body is not a payment request; ``str()`` says why, in Go's words."""


@dataclass(frozen=True)
class ParsedRequest:
    info: OrchestratorInfo
    state: SignedState | None
    manifest_id: str
    app: str
    in_pixels: int
    type: str
    max_price: Any
    capabilities: Capabilities | None


def _field(obj: dict[str, Any], key: str, kind: type, go_type: str, go_name: str) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        found = {str: "string", bool: "bool", dict: "object", list: "array"}.get(type(value), "number")
        raise RequestError(f"json: cannot unmarshal {found} into Go struct field RemotePaymentRequest.{go_name} "
                           f"of type {go_type}")  # fmt: skip
    return value


def _bytes(obj: dict[str, Any], key: str, go_name: str) -> bytes:
    text = _field(obj, key, str, "[]uint8", go_name) or ""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"illegal base64 data in {go_name}") from None


def parse_request(body: bytes) -> ParsedRequest:
    """The request in ``body``; :class:`RequestError` for anything that go-livepeer would answer 400 before it
    looks at prices and state."""
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as exc:
        if not exc.doc.strip():
            raise RequestError("EOF") from None
        char = exc.doc[exc.pos] if exc.pos < len(exc.doc) else ""
        raise RequestError(f"invalid character {char!r} in the JSON body: {exc.msg} (offset {exc.pos})") from None
    except UnicodeDecodeError:
        raise RequestError("invalid character in the JSON body: it is not UTF-8") from None
    if not isinstance(raw, dict):
        kind = "array" if isinstance(raw, list) else "string" if isinstance(raw, str) else "number"
        raise RequestError(f"json: cannot unmarshal {kind} into Go value of type server.RemotePaymentRequest")
    obj = fold_keys(raw)
    orchestrator = _bytes(obj, "orchestrator", "orchestrator")
    state_obj = _field(obj, "state", dict, "server.RemotePaymentStateSig", "state")
    try:
        state = SignedState.from_json(state_obj)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    manifest_id = _field(obj, "manifestid", str, "string", "ManifestID") or ""
    app = _field(obj, "app", str, "string", "app") or ""
    in_pixels = _field(obj, "inpixels", int, "int64", "inPixels") or 0
    if not -(2**63) <= in_pixels < 2**63:
        raise RequestError("json: cannot unmarshal number into Go struct field RemotePaymentRequest.inPixels of "
                           "type int64")  # fmt: skip
    type_ = _field(obj, "type", str, "string", "type") or ""
    max_price = obj.get("maxprice")
    capabilities_bytes = _bytes(obj, "capabilities", "capabilities")
    if not orchestrator:
        raise RequestError("missing orchestrator")
    info = OrchestratorInfo()
    try:
        info.ParseFromString(orchestrator)
    except DecodeError:
        raise RequestError(PROTO_ERROR) from None
    caps: Capabilities | None = None
    if capabilities_bytes:
        caps = Capabilities()
        try:
            caps.ParseFromString(capabilities_bytes)
        except DecodeError:
            raise RequestError(PROTO_ERROR) from None
    return ParsedRequest(info, state, manifest_id, app, int(in_pixels), type_, max_price, caps)
