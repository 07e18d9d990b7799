"""The gRPC-over-HTTP/2 wire pieces our ASGI gRPC server shares between unary and streaming methods.

Status codes, the :class:`GrpcError` a handler raises to end a call with a status, who is calling
(:class:`PeerInfo`), message framing (1 flag byte, 4-byte big-endian length, the message), the
``grpc-timeout`` header, and the reply shape every call ends with: ``200`` headers with
``content-type: application/grpc``, the body, then ``grpc-status``/``grpc-message`` trailers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lpnode.errors import LpnodeError
from lpnode.protocol.asgi import Scope, Send

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest request or reply message; grpcio's default receive limit."""

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
RESPONSE_HEADERS = [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", b"identity")]


class StatusCode(enum.IntEnum):
    """gRPC status codes (the numbers are fixed by the gRPC spec)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcError(LpnodeError):
    """Raised by a handler to end the call with ``code``; ``message`` is sent to the caller as is."""

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PeerInfo:
    """Who is calling. ``metadata`` holds the request headers except pseudo-headers and gRPC's own."""

    client: tuple[str, int] | None
    tls: bool
    authority: str
    metadata: Mapping[str, str]


def peer_info(scope: Scope, headers: Mapping[str, str]) -> PeerInfo:
    client = scope.get("client")
    return PeerInfo(
        client=(str(client[0]), int(client[1])) if client else None,
        tls=scope.get("scheme") == "https",
        authority=headers.get(":authority") or headers.get("host", ""),
        metadata={k: v for k, v in headers.items() if not k.startswith((":", "grpc-")) and k != "te"},
    )


def frame(message: bytes) -> bytes:
    """One length-prefixed, uncompressed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def parse_timeout(value: str | None) -> float | None:
    """Seconds in a ``grpc-timeout`` header (``<up to 8 digits><H|M|S|m|u|n>``); ``None`` if absent or malformed."""
    if not value or len(value) > 9 or value[-1] not in _TIMEOUT_UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def percent_encode(message: str) -> str:
    """``grpc-message`` encoding: printable ASCII except ``%`` as is, every other UTF-8 byte as ``%XX``."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode())


async def start_response(send: Send, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """The ``200`` headers every call begins with, plus ``extra`` (trailers follow the body)."""
    headers = [*RESPONSE_HEADERS, *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})


async def end_response(send: Send, body: bytes, code: StatusCode, message: str) -> None:
    """The last of the body, then the status trailers."""
    await send({"type": "http.response.body", "body": body, "more_body": False})
    trailers = [(b"grpc-status", str(int(code)).encode())]
    if message:
        trailers.append((b"grpc-message", percent_encode(message).encode()))
    await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})


async def respond(send: Send, body: bytes, code: StatusCode, message: str) -> None:
    """A whole reply: headers, ``body``, trailers. Errors always go out this way with an empty body:
    clients reject a trailers-only reply from this server stack."""
    await start_response(send)
    await end_response(send, body, code, message)
