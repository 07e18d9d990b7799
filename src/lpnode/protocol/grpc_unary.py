"""A small gRPC server for unary methods, as an ASGI app (HTTP/2 only; see :mod:`lpnode.protocol.same_port`).

It speaks the gRPC-over-HTTP/2 wire format directly: a request body of one length-prefixed message
(1 flag byte, 4-byte big-endian length), a ``200`` response with ``content-type: application/grpc``,
one length-prefixed reply, then ``grpc-status``/``grpc-message`` trailers. Errors always go out as
headers, empty body, trailers: clients reject a trailers-only reply from this server stack.

Handlers raise :class:`GrpcError` to answer with a status; any other exception becomes ``UNKNOWN`` with
a generic message (the details go to the log, not to the caller). Unknown methods get ``UNIMPLEMENTED``,
compressed messages ``UNIMPLEMENTED``, oversize messages ``RESOURCE_EXHAUSTED``, undecodable ones
``INVALID_ARGUMENT``, and a call that outlives its ``grpc-timeout`` ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from lpnode.errors import LpnodeError
from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Scope, Send

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest request or reply message; grpcio's default receive limit."""

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


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


RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass(frozen=True)
class UnaryMethod(Generic[RequestT, ResponseT]):
    """A unary method: how to decode its request, and the async function that answers it."""

    request_type: type[RequestT]
    handler: Callable[[RequestT, PeerInfo], Awaitable[ResponseT]]


class GrpcUnaryApp:
    """ASGI app serving ``methods``, keyed by gRPC path (``/package.Service/Method``)."""

    def __init__(
        self, methods: Mapping[str, UnaryMethod[Any, Any]], *, max_message_bytes: int = MAX_MESSAGE_BYTES
    ) -> None:
        self._methods = dict(methods)
        self._max = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away; there is no one to answer
        path: str = scope["path"]
        try:
            reply = await self._call(path, scope, headers, body)
        except GrpcError as exc:
            await _respond(send, b"", exc.code, exc.message)
            return
        await _respond(send, _frame(reply), StatusCode.OK, "")

    async def _call(self, path: str, scope: Scope, headers: Mapping[str, str], body: bytes | int) -> bytes:
        method = self._methods.get(path)
        if method is None:
            known = ", ".join(sorted(self._methods)) or "none"
            raise GrpcError(StatusCode.UNIMPLEMENTED, f"unknown method {path}; this server implements: {known}")
        content_type = headers.get("content-type", "")
        if content_type not in ("application/grpc", "application/grpc+proto"):
            raise GrpcError(
                StatusCode.UNIMPLEMENTED, f"content-type {content_type!r} is not supported; use application/grpc"
            )
        if isinstance(body, int):
            raise GrpcError(
                StatusCode.RESOURCE_EXHAUSTED, f"request of {body} bytes is larger than the {self._max}-byte limit"
            )
        try:
            request = method.request_type.FromString(_unframe(body))
        except DecodeError as exc:
            name = method.request_type.DESCRIPTOR.full_name
            raise GrpcError(StatusCode.INVALID_ARGUMENT, f"the request is not a valid {name}: {exc}") from None
        timeout = _parse_timeout(headers.get("grpc-timeout"))
        peer = PeerInfo(
            client=_client(scope),
            tls=scope.get("scheme") == "https",
            authority=headers.get(":authority") or headers.get("host", ""),
            metadata={k: v for k, v in headers.items() if not k.startswith((":", "grpc-")) and k != "te"},
        )
        try:
            async with asyncio.timeout(timeout) as deadline:
                response = await method.handler(request, peer)
        except GrpcError:
            raise
        except TimeoutError:
            if deadline.expired():
                raise GrpcError(StatusCode.DEADLINE_EXCEEDED, f"{path} did not finish within the deadline") from None
            raise _unexpected(path) from None
        except Exception:
            log.exception("gRPC handler failed", extra={"fields": {"method": path}})
            raise _unexpected(path) from None
        reply: bytes = response.SerializeToString()
        if len(reply) > self._max:
            log_event(log, "gRPC reply too large", logging.ERROR, method=path, bytes=len(reply))
            raise GrpcError(StatusCode.RESOURCE_EXHAUSTED, f"the reply is larger than the {self._max}-byte limit")
        return reply

    async def _read_body(self, receive: Receive) -> bytes | int | None:
        """The whole request body; its size (int) once it passes the limit; ``None`` if the client left.

        The body is always read to its end, even past the limit, so the connection's other streams are not
        held up behind an unread one.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size <= self._max + 5:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks) if size <= self._max + 5 else size


def _unframe(body: bytes) -> bytes:
    """The one message in a unary request body."""
    if len(body) < 5:
        raise GrpcError(StatusCode.INTERNAL, "the request holds no complete gRPC message (need a 5-byte prefix)")
    flag, length = body[0], int.from_bytes(body[1:5], "big")
    if flag == 1:
        raise GrpcError(StatusCode.UNIMPLEMENTED, "compressed messages are not supported; send them uncompressed")
    if flag != 0:
        raise GrpcError(StatusCode.INTERNAL, f"bad gRPC message flag {flag}")
    if len(body) - 5 < length:
        raise GrpcError(StatusCode.INTERNAL, f"the request message is truncated ({len(body) - 5} of {length} bytes)")
    if len(body) - 5 > length:
        raise GrpcError(StatusCode.UNIMPLEMENTED, "a unary method takes exactly one request message")
    return body[5:]


def _client(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    return (str(client[0]), int(client[1])) if client else None


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _parse_timeout(value: str | None) -> float | None:
    """Seconds in a ``grpc-timeout`` header (``<up to 8 digits><H|M|S|m|u|n>``); ``None`` if absent or malformed."""
    if not value or len(value) > 9 or value[-1] not in _TIMEOUT_UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def _unexpected(path: str) -> GrpcError:
    return GrpcError(StatusCode.UNKNOWN, f"{path} failed on the server; the server log has the details")


def _percent_encode(message: str) -> str:
    """``grpc-message`` encoding: printable ASCII except ``%`` as is, every other UTF-8 byte as ``%XX``."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode())


async def _respond(send: Send, body: bytes, code: StatusCode, message: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/grpc"), (b"grpc-accept-encoding", b"identity")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
    trailers = [(b"grpc-status", str(int(code)).encode())]
    if message:
        trailers.append((b"grpc-message", _percent_encode(message).encode()))
    await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})
