"""A small gRPC server as an ASGI app (HTTP/2 only; see :mod:`lpnode.protocol.same_port`): unary methods
here, server-streaming ones through :mod:`lpnode.protocol.grpc_stream`.

It speaks the gRPC-over-HTTP/2 wire format directly (:mod:`lpnode.protocol.grpc_wire`): a request body of
one length-prefixed message (1 flag byte, 4-byte big-endian length), a ``200`` response with
``content-type: application/grpc``, one length-prefixed reply, then ``grpc-status``/``grpc-message``
trailers. Errors always go out as headers, empty body, trailers: clients reject a trailers-only reply
from this server stack.

Handlers raise :class:`GrpcError` to answer with a status; any other exception becomes ``UNKNOWN`` with
a generic message (the details go to the log, not to the caller). Unknown methods get ``UNIMPLEMENTED``,
compressed messages ``UNIMPLEMENTED``, oversize messages ``RESOURCE_EXHAUSTED``, undecodable ones
``INVALID_ARGUMENT``, and a call that outlives its ``grpc-timeout`` ``DEADLINE_EXCEEDED``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Scope, Send
from lpnode.protocol.grpc_stream import StreamMethod, serve_stream
from lpnode.protocol.grpc_wire import (
    MAX_MESSAGE_BYTES,
    GrpcError,
    PeerInfo,
    StatusCode,
    frame,
    parse_timeout,
    peer_info,
    respond,
)

__all__ = ["MAX_MESSAGE_BYTES", "GrpcError", "GrpcMethod", "GrpcUnaryApp", "PeerInfo", "StatusCode", "UnaryMethod"]

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass(frozen=True)
class UnaryMethod(Generic[RequestT, ResponseT]):
    """A unary method: how to decode its request, and the async function that answers it."""

    request_type: type[RequestT]
    handler: Callable[[RequestT, PeerInfo], Awaitable[ResponseT]]


GrpcMethod = UnaryMethod[Any, Any] | StreamMethod[Any, Any]
"""A method table entry: unary, or server-streaming."""


class GrpcUnaryApp:
    """ASGI app serving ``methods``, keyed by gRPC path (``/package.Service/Method``)."""

    def __init__(self, methods: Mapping[str, GrpcMethod], *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._methods = dict(methods)
        self._max = max_message_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away; there is no one to answer
        path: str = scope["path"]
        try:
            method, request = self._decode(path, headers, body)
            peer = peer_info(scope, headers)
            timeout = parse_timeout(headers.get("grpc-timeout"))
            if isinstance(method, StreamMethod):
                await serve_stream(path, method, request, peer, timeout, receive, send, self._max)
                return
            reply = await self._call(path, method, request, peer, timeout)
        except GrpcError as exc:
            await respond(send, b"", exc.code, exc.message)
            return
        await respond(send, frame(reply), StatusCode.OK, "")

    def _decode(self, path: str, headers: Mapping[str, str], body: bytes | int) -> tuple[GrpcMethod, Message]:
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
        return method, request

    async def _call(
        self, path: str, method: UnaryMethod[Any, Any], request: Message, peer: PeerInfo, timeout: float | None
    ) -> bytes:
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


def _unexpected(path: str) -> GrpcError:
    return GrpcError(StatusCode.UNKNOWN, f"{path} failed on the server; the server log has the details")
