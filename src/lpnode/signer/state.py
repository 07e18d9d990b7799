"""The payment state a signer hands each client, signed so it cannot be forged (go-livepeer's
``RemotePaymentState``).

The signer keeps nothing per client between calls: everything it needs to bill the next call (the credit left
with the orchestrator, the last nonce, when it last billed, the price the session started at, the webhook's
cached authorisation) travels in this state, which the client sends back verbatim. The state is the JSON of
:class:`PaymentState` with go-livepeer's field names, and the signature is the signer's Ethereum signature over
those exact bytes (EIP-191 personal sign, as go's ``Eth.Sign``), so any signer holding the same key accepts any
other's state, go-livepeer's included, and none accepts a state it did not sign.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from lpnode.payments.signatures import sign, verify
from lpnode.protocol.remote_signer import SignedState

_ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class StateError(ValueError):
    """A state the signer refuses; ``str()`` is go-livepeer's message (``invalid sig``, ``invalid state``)."""


@dataclass
class PaymentState:
    """One client's session with one orchestrator. ``last_update_ns`` is Unix nanoseconds (0: never billed);
    ``balance`` the credit left with the orchestrator in wei (exact); ``orchestrator`` 20 raw bytes."""

    state_id: str
    orchestrator: bytes
    initial_price_per_unit: int
    initial_pixels_per_unit: int
    type: str = ""
    app: str = ""
    pm_session_id: str = ""
    last_update_ns: int = 0
    auth_expiry: int = 0
    sender_nonce: int = 0
    balance: Fraction = Fraction(0)
    sequence_number: int = 0
    auth_id: str = ""

    @classmethod
    def new(cls, orchestrator: bytes, price_per_unit: int, pixels_per_unit: int, type_: str, app: str) -> PaymentState:
        """A first call's state: a random 8-hex id, pinned to the orchestrator, app, type and current price."""
        return cls(secrets.token_hex(4), orchestrator, price_per_unit, pixels_per_unit, type_, app)

    @property
    def initial_price(self) -> Fraction | None:
        """Wei per unit the session started at (None when the state holds no usable price)."""
        if self.initial_price_per_unit <= 0 or self.initial_pixels_per_unit <= 0:
            return None
        return Fraction(self.initial_price_per_unit, self.initial_pixels_per_unit)

    def to_go(self) -> dict[str, Any]:
        """The state as go-livepeer marshals it: every field, Go's names and order."""
        return {
            "StateID": self.state_id,
            "PMSessionID": self.pm_session_id,
            "LastUpdate": format_time(self.last_update_ns),
            "OrchestratorAddress": "0x" + self.orchestrator.hex(),
            "App": self.app,
            "AuthExpiry": self.auth_expiry,
            "SenderNonce": self.sender_nonce,
            "Balance": rat_string(self.balance),
            "InitialPricePerUnit": self.initial_price_per_unit,
            "InitialPixelsPerUnit": self.initial_pixels_per_unit,
            "Type": self.type,
            "SequenceNumber": self.sequence_number,
            "AuthID": self.auth_id,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_go(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> PaymentState:
        """Parse state bytes; :class:`StateError` ``invalid state`` when they are not a state."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            obj = {str(k).lower(): v for k, v in raw.items()}
            address = str(obj.get("orchestratoraddress") or "0x" + "0" * 40)
            digits = address[2:] if address[:2] in ("0x", "0X") else address
            if len(digits) != 40:
                raise ValueError("address")
            balance_text = str(obj.get("balance") or "0")
            return cls(
                state_id=_str(obj.get("stateid")),
                orchestrator=bytes.fromhex(digits),
                initial_price_per_unit=_int(obj.get("initialpriceperunit")),
                initial_pixels_per_unit=_int(obj.get("initialpixelsperunit")),
                type=_str(obj.get("type")),
                app=_str(obj.get("app")),
                pm_session_id=_str(obj.get("pmsessionid")),
                last_update_ns=parse_time(_str(obj.get("lastupdate")) or _ZERO_TIME),
                auth_expiry=_int(obj.get("authexpiry")),
                sender_nonce=_int(obj.get("sendernonce")) % 2**32,
                balance=Fraction(balance_text),
                sequence_number=_int(obj.get("sequencenumber")),
                auth_id=_str(obj.get("authid")),
            )
        except (ValueError, TypeError, ZeroDivisionError):
            raise StateError("invalid state") from None


def _str(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError("string expected")
    return value


def _int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("integer expected")
    return value


def rat_string(value: Fraction) -> str:
    """go's ``big.Rat.RatString``: ``"5"`` for a whole number, ``"6000/7"`` otherwise."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def format_time(ns: int) -> str:
    """Unix nanoseconds as Go's ``time.Time`` JSON (RFC 3339 with trailing zeros of the fraction dropped)."""
    if ns <= 0:
        return _ZERO_TIME
    seconds, rest = divmod(ns, 10**9)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{rest:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def parse_time(text: str) -> int:
    """An RFC 3339 time as Unix nanoseconds (Go's zero time is 0); ValueError when it is not one."""
    if text == _ZERO_TIME:
        return 0
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = match.group(3).replace("Z", "+00:00")
    base = datetime.fromisoformat(match.group(1) + zone)
    fraction = int((match.group(2) or "0").ljust(9, "0"))
    return int(base.timestamp()) * 10**9 + fraction


def seal(state: PaymentState, key: bytes) -> SignedState:
    """The wire form of ``state``: its bytes and the signature of ``key`` over them."""
    data = state.encode()
    return SignedState(data, sign(key, data))


def open_state(signed: SignedState, address: bytes) -> PaymentState:
    """The state in ``signed`` once its signature is checked against ``address``; :class:`StateError`
    ``invalid sig`` (not signed by this signer, or altered) or ``invalid state`` (signed but not a state)."""
    if not verify(address, signed.state, signed.sig):
        raise StateError("invalid sig")
    return PaymentState.decode(signed.state)


__all__ = ["PaymentState", "StateError", "format_time", "open_state", "parse_time", "rat_string", "seal"]
