"""The wire contract of a remote signer (go-livepeer's ``-remoteSigner``), for the signer and its clients alike.

A remote signer holds a payer's Ethereum key and deposit so that key-less clients (a gateway with
``-remoteSignerUrl``, the ``livepeer-gateway`` SDK, a browser app) can pay on-chain orchestrators. Its routes, on
plain HTTP:

- ``POST /sign-orchestrator-info`` (any body) → :class:`OrchestratorInfoSignature` ``{"address", "signature"}``:
  the signer's address and its signature over it, which a client puts in ``GetOrchestrator``'s request;
- ``POST /generate-live-payment`` :class:`PaymentRequest` → :class:`PaymentResponse`
  ``{"payment", "segCreds", "state"}``: the ``Livepeer-Payment`` and ``Livepeer-Segment`` header values to send the
  orchestrator, and the signed :class:`SignedState` to send back on the next call (opaque to clients);
- ``GET /discover-orchestrators[?caps=X&caps=Y]`` (when the signer runs with ``-remoteDiscovery``) → a JSON list of
  ``{"address", "score", "capabilities"?, "runners"?}``;
- ``GET /healthz`` → 200, empty body.

Statuses beyond the usual ones: :data:`STATUS_REFRESH_SESSION` (480, fetch fresh ``OrchestratorInfo``; the
orchestrator's URL is in :data:`ORCHESTRATOR_URL_HEADER`), :data:`STATUS_PRICE_CEILING` (481, the orchestrator's
price is above a ceiling: try another orchestrator), :data:`STATUS_NO_TICKETS` (482, nothing is due yet: keep the
old state and ask again later). Errors are ``{"error": {"message": "..."}}`` (:func:`error_message` reads them).

Field names are go-livepeer's exactly, odd ones included (``ManifestID``, ``segCreds``, ``State``/``Sig``). Byte
fields are standard padded base64. Decoding matches keys case-insensitively, as Go's ``encoding/json`` does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

SIGN_ORCHESTRATOR_INFO = "/sign-orchestrator-info"
GENERATE_LIVE_PAYMENT = "/generate-live-payment"
DISCOVER_ORCHESTRATORS = "/discover-orchestrators"
HEALTHZ = "/healthz"

STATUS_REFRESH_SESSION = 480
"""The orchestrator info is stale (auth token in its last 10 %, or ticket params expired): fetch a new one."""
STATUS_PRICE_CEILING = 481
"""The orchestrator's price is above a ceiling (configured, request, session's initial, or webhook)."""
STATUS_NO_TICKETS = 482
"""No tickets are needed now (the credit covers the fee); no state comes back: keep the previous one."""

ORCHESTRATOR_URL_HEADER = "Livepeer-Orchestrator-URL"
"""On a 480: the orchestrator's URL (``OrchestratorInfo.transcoder``) to fetch fresh info from."""
AUTH_ID_HEADER = "Signer-Auth-Id"
"""A client may name who it is with this header; the signer pins it in the state (the webhook's ``auth_id`` wins)."""

TYPE_RAW = ""
"""Pay for ``inPixels`` units."""
TYPE_LIVE = "live"
"""Live Runner metered in seconds: the first call bills 10 s, then the seconds elapsed since the last call."""
TYPE_LV2V = "lv2v"
"""Live video: 720p30 pixels; the first call bills 60 s, then the seconds elapsed."""
TYPE_FIXED = "fixed"
"""One unit per call (fixed-price Live Runner apps)."""
PAYMENT_TYPES = (TYPE_RAW, TYPE_LIVE, TYPE_LV2V, TYPE_FIXED)
PRICE_UNITS = {TYPE_LIVE: "seconds", TYPE_LV2V: "720p-pixel-seconds", TYPE_FIXED: "fixed"}
"""The ``maxPrice.unit`` each payment type requires."""
LV2V_PIXELS_PER_SECOND = 1280 * 720 * 30
LV2V_OPENING_SECONDS = 60
LIVE_OPENING_SECONDS = 10
MAX_TICKETS_PER_CALL = 100


class SignerWireError(ValueError):
    """A signer message that does not have the shape of the contract; ``str()`` says what is wrong."""


def b64encode(data: bytes) -> str:
    """Standard padded base64, as Go encodes ``[]byte`` in JSON."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, field: str) -> bytes:
    """Decode a base64 JSON field (Go's ``[]byte``); :class:`SignerWireError` naming ``field`` when it is not."""
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise SignerWireError(f"illegal base64 data in {field}") from None


def fold_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with lower-cased keys, the last of equal keys winning: how Go matches JSON keys to fields."""
    return {str(key).lower(): value for key, value in obj.items()}


@dataclass(frozen=True)
class SignedState:
    """The state a signer returns with each payment: ``state`` bytes and the signer's ``sig`` over them.

    Opaque to clients: echo it verbatim on the next call for the same orchestrator, app and type."""

    state: bytes
    sig: bytes

    def to_json(self) -> dict[str, str]:
        return {"State": b64encode(self.state), "Sig": b64encode(self.sig)}

    @classmethod
    def from_json(cls, obj: object) -> SignedState | None:
        """The state in a request or response, or None when absent or both parts are empty (a first call)."""
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise SignerWireError('state must be an object {"State": base64, "Sig": base64}')
        folded = fold_keys(obj)
        state, sig = folded.get("state") or "", folded.get("sig") or ""
        if not isinstance(state, str) or not isinstance(sig, str):
            raise SignerWireError("state.State and state.Sig must be base64 strings")
        if not state and not sig:
            return None
        return cls(b64decode(state, "state.State"), b64decode(sig, "state.Sig"))


@dataclass(frozen=True)
class MaxPrice:
    """A price ceiling in a request (or a webhook's answer): ``price`` wei per ``unit``, ``currency`` ``wei``."""

    price: str
    currency: str = "wei"
    unit: str = ""

    def to_json(self) -> dict[str, str]:
        return {"price": self.price, "currency": self.currency, "unit": self.unit}


@dataclass(frozen=True)
class PaymentRequest:
    """``POST /generate-live-payment``'s body. ``orchestrator`` is a serialised protobuf ``OrchestratorInfo``
    (from ``GetOrchestrator``, a 402 challenge's ``payment_params`` or a payment's ``PaymentResult``);
    ``capabilities`` a serialised ``Capabilities`` (empty: none). ``manifest_id`` is required once ``state`` is
    given."""

    orchestrator: bytes
    type: str = TYPE_RAW
    state: SignedState | None = None
    manifest_id: str = ""
    app: str = ""
    in_pixels: int = 0
    max_price: MaxPrice | None = None
    capabilities: bytes = b""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"orchestrator": b64encode(self.orchestrator)}
        if self.type:
            body["type"] = self.type
        if self.state is not None:
            body["state"] = self.state.to_json()
        if self.manifest_id:
            body["ManifestID"] = self.manifest_id
        if self.app:
            body["app"] = self.app
        if self.in_pixels:
            body["inPixels"] = self.in_pixels
        if self.max_price is not None:
            body["maxPrice"] = self.max_price.to_json()
        if self.capabilities:
            body["capabilities"] = b64encode(self.capabilities)
        return body


@dataclass(frozen=True)
class PaymentResponse:
    """``POST /generate-live-payment``'s 200 answer. ``payment`` and ``seg_creds`` are ready header values
    (``Livepeer-Payment``, ``Livepeer-Segment``: base64 protobufs); ``state`` goes back on the next call."""

    payment: str
    seg_creds: str
    state: SignedState

    def to_json(self) -> dict[str, Any]:
        return {"payment": self.payment, "segCreds": self.seg_creds, "state": self.state.to_json()}

    @classmethod
    def from_json(cls, obj: object) -> PaymentResponse:
        if not isinstance(obj, dict):
            raise SignerWireError("the signer's payment answer is not a JSON object")
        folded = fold_keys(obj)
        payment, seg_creds = folded.get("payment"), folded.get("segcreds") or ""
        if not isinstance(payment, str) or not payment:
            raise SignerWireError("the signer's payment answer has no payment")
        if not isinstance(seg_creds, str):
            raise SignerWireError("the signer's payment answer has a segCreds that is not a string")
        state = SignedState.from_json(folded.get("state"))
        if state is None:
            raise SignerWireError("the signer's payment answer has no state")
        return cls(payment, seg_creds, state)


@dataclass(frozen=True)
class OrchestratorInfoSignature:
    """``POST /sign-orchestrator-info``'s answer: the signer's EIP-55 ``address`` and ``signature`` (``0x`` hex of
    65 bytes), what a client sends as ``OrchestratorRequest.address``/``sig``."""

    address: str
    signature: str

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "signature": self.signature}

    @property
    def address_bytes(self) -> bytes:
        return _hex(self.address, "address")

    @property
    def signature_bytes(self) -> bytes:
        return _hex(self.signature, "signature")

    @classmethod
    def from_json(cls, obj: object) -> OrchestratorInfoSignature:
        if not isinstance(obj, dict):
            raise SignerWireError("the signer's sign-orchestrator-info answer is not a JSON object")
        folded = fold_keys(obj)
        address, signature = folded.get("address"), folded.get("signature")
        if not isinstance(address, str) or not address or not isinstance(signature, str) or not signature:
            raise SignerWireError("the signer's sign-orchestrator-info answer needs address and signature strings")
        found = cls(address, signature)
        if len(found.address_bytes) != 20:
            raise SignerWireError("the signer's address is not 20 bytes")
        found.signature_bytes  # noqa: B018 - checks the hex
        return found


def _hex(text: str, field: str) -> bytes:
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise SignerWireError(f"the signer's {field} is not hex") from None


def error_body(message: str) -> bytes:
    """The JSON error envelope the signer answers with: ``{"error":{"message":...}}`` and a newline."""
    return json.dumps({"error": {"message": message}}).encode() + b"\n"


def error_message(body: bytes) -> str:
    """The message of a signer's error answer (its JSON envelope, else the text itself, trimmed)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return text
