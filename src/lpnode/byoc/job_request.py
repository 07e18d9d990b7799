"""The ``Livepeer`` header of a BYOC job: decoding it, its job parameters, and checking its signature.

A BYOC job carries ``Livepeer: base64(JSON JobRequest)`` (go-livepeer ``byoc/types.go``)::

    {"id": "", "request": "<JSON text>", "parameters": "<JSON text of JobParameters>",
     "capability": "text-reversal", "sender": "0x..", "sig": "0x..", "timeout_seconds": 30}

``request`` and ``parameters`` are JSON *texts* inside the JSON. ``parameters`` may name orchestrators to
use or avoid: ``{"orchestrators": {"include": [url..], "exclude": [url..]}}``. ``sig`` is the sender's
Ethereum personal-sign signature of ``keccak256(request + parameters)``, hex with an optional ``0x``;
:func:`verify_signature` checks it as go-livepeer's ``crypto.VerifySig`` does (65 bytes, V 27 or 28,
low S). Every problem raises :class:`BadRequestError` with a message saying what to fix.

Go durations (``Livepeer-Orch-Search-Timeout: 500ms``) are parsed here too (:func:`go_duration`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from Crypto.Hash import keccak

from lpnode.errors import BadRequestError
from lpnode.protocol.go_duration import parse_go_duration

JOB_HEADER = "livepeer"
CAPABILITY_HEADER = "livepeer-capability"
MAX_TIMEOUT_SECONDS = 24 * 3600
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@dataclass(frozen=True)
class JobParameters:
    """The parts of ``parameters`` lpnode acts on: which orchestrators to use or avoid (URLs)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRequest:
    """A decoded ``Livepeer`` header."""

    capability: str
    timeout_seconds: int
    id: str = ""
    request: str = ""
    parameters: str = ""
    sender: str = ""
    sig: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields lpnode does not act on (``capability_url`` ...), kept so the header can be re-encoded whole."""

    def job_parameters(self) -> JobParameters:
        return parse_parameters(self.parameters)

    def encode(self, **changes: str) -> str:
        """This request as a ``Livepeer`` header value, with ``changes`` (e.g. ``sender``, ``sig``) applied."""
        data: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "request": self.request,
            "parameters": self.parameters,
            "capability": self.capability,
            "sender": self.sender,
            "sig": self.sig,
            "timeout_seconds": self.timeout_seconds,
        }
        data.update(changes)
        return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_job_request(value: str | None) -> JobRequest:
    """The ``Livepeer`` header's JobRequest; :class:`BadRequestError` for a missing, undecodable or incomplete one."""
    if not value:
        raise BadRequestError(
            "missing Livepeer header; send base64 of a JSON JobRequest, e.g. "
            '{"capability":"NAME","request":"{}","timeout_seconds":30}'
        )
    try:
        raw = _b64(value)
    except (binascii.Error, ValueError):
        raise BadRequestError("the Livepeer header is not valid base64; send base64 of a JSON JobRequest") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the Livepeer header does not hold JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequestError("the Livepeer header must hold a JSON object (a JobRequest)")
    capability = data.get("capability")
    if not isinstance(capability, str) or not capability:
        raise BadRequestError('the JobRequest has no "capability"; name the capability to run')
    timeout = data.get("timeout_seconds")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise BadRequestError(
            'no timeout_seconds set in the JobRequest; give "timeout_seconds": N (a positive whole number of seconds)'
        )
    if timeout != int(timeout) or timeout > MAX_TIMEOUT_SECONDS:
        raise BadRequestError(f"timeout_seconds must be a whole number from 1 to {MAX_TIMEOUT_SECONDS}, got {timeout}")
    texts = {}
    for name in ("id", "request", "parameters", "sender", "sig"):
        text = data.get(name)
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise BadRequestError(f'the JobRequest\'s "{name}" must be a string, got {type(text).__name__}')
        texts[name] = text
    if texts["request"]:
        try:
            json.loads(texts["request"])
        except ValueError:
            raise BadRequestError('the JobRequest\'s "request" must be JSON text, e.g. "{}"') from None
    known = {"capability", "timeout_seconds", *texts}
    extra = {k: v for k, v in data.items() if k not in known}
    request = JobRequest(capability=capability, timeout_seconds=int(timeout), extra=extra, **texts)
    request.job_parameters()  # a bad parameters text is the caller's mistake: say so now
    return request


def parse_parameters(text: str) -> JobParameters:
    """``parameters`` (JSON text, may be empty) as :class:`JobParameters`."""
    if not text.strip():
        return JobParameters()
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequestError('the JobRequest\'s "parameters" must be JSON text, e.g. "{}"') from None
    if not isinstance(data, dict):
        raise BadRequestError('the JobRequest\'s "parameters" must be a JSON object')
    orchestrators = data.get("orchestrators") or {}
    if not isinstance(orchestrators, dict):
        raise BadRequestError('"orchestrators" in parameters must be {"include": [...], "exclude": [...]}')
    lists = {}
    for name in ("include", "exclude"):
        urls = orchestrators.get(name) or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise BadRequestError(f'"orchestrators.{name}" in parameters must be a list of URLs')
        lists[name] = tuple(normalize_url(u) for u in urls if u.strip())
    return JobParameters(include=lists["include"], exclude=lists["exclude"])


def normalize_url(url: str) -> str:
    """An orchestrator URL compared loosely: lower-case, no trailing slash, ``https://`` when no scheme."""
    text = url.strip().rstrip("/").lower()
    return text if "://" in text else "https://" + text


def signed_message(request: JobRequest) -> bytes:
    """What the sender signs: ``keccak256(request + parameters)``."""
    return keccak.new(digest_bits=256, data=(request.request + request.parameters).encode()).digest()


def verify_signature(request: JobRequest) -> None:
    """Check ``sig`` is ``sender``'s signature of the job; :class:`BadRequestError` if it is not.

    A request without ``sig`` is not checked here (the caller decides what an unsigned job may do)."""
    if not request.sig:
        return
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{40}", request.sender):
        raise BadRequestError('Could not verify job creds: a signed JobRequest needs "sender", an 0x address')
    try:
        sig = bytes.fromhex(request.sig.removeprefix("0x"))
    except ValueError:
        raise BadRequestError('Could not verify job creds: "sig" is not hex') from None
    if len(sig) != 65 or sig[64] not in (27, 28) or int.from_bytes(sig[32:64], "big") > _SECP256K1_HALF_N:
        raise BadRequestError("Could not verify job creds: the signature is malformed (65 bytes, V 27/28, low S)")
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        signer = Account.recover_message(encode_defunct(primitive=signed_message(request)), signature=sig)
    except Exception:  # eth-account raises several types for unrecoverable signatures
        raise BadRequestError("Could not verify job creds: the signature does not recover to an address") from None
    if signer.lower() != "0x" + request.sender.lower().removeprefix("0x"):
        raise BadRequestError("Could not verify job creds: the signature is not the sender's")


def go_duration(text: str, what: str) -> float:
    """A Go duration (``1s``, ``500ms``, ``1m30s``, ``2.5s``) in seconds; a bare number means seconds."""
    try:
        seconds = parse_go_duration(text, bare_seconds=True)
    except ValueError:
        raise BadRequestError(f"{what} must be a duration such as 500ms or 2s, got {text!r}") from None
    if not seconds > 0:
        raise BadRequestError(f"{what} must be positive, got {text!r}")
    return seconds


def _b64(text: str) -> bytes:
    """Standard base64, tolerating missing padding and URL-safe characters."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
