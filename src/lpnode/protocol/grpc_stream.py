"""Server-streaming gRPC methods for our ASGI gRPC server (:mod:`lpnode.protocol.grpc_unary` dispatches here).

A streaming handler gets the decoded request, the caller's :class:`PeerInfo` and a :class:`ServerStream`
to write replies to. The ``200`` headers go out when the handler calls :meth:`ServerStream.start` or
sends its first message, each message as its own length-prefixed frame as soon as it is sent; the call
ends with the status trailers when the handler returns (``OK``) or raises :class:`GrpcError` (its
status). Any other exception ends it with ``UNKNOWN`` and a generic message.

The caller leaving (cancelling the call, closing the connection, or being killed) is noticed at once:
the server hands the call a ``http.disconnect`` and the handler is cancelled, so its clean-up (``finally``)
runs promptly. A ``grpc-timeout`` bounds the whole call (``DEADLINE_EXCEEDED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from lpnode.logs import log_event
from lpnode.protocol.asgi import Receive, Send
from lpnode.protocol.grpc_wire import GrpcError, PeerInfo, StatusCode, end_response, frame, start_response

log = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


class ServerStream(Generic[ResponseT]):
    """Where a streaming handler writes its replies."""

    def __init__(self, send: Send, max_message_bytes: int) -> None:
        self._send = send
        self._max = max_message_bytes
        self.started = False
        self.sent = 0

    async def start(self, metadata: Sequence[tuple[str, str]] = ()) -> None:
        """Send the response headers now, with ``metadata`` (clients then know the call was accepted);
        idempotent."""
        if not self.started:
            self.started = True
            await start_response(self._send, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in metadata])

    async def send(self, message: ResponseT) -> None:
        """Send one reply message. ``GrpcError`` (``RESOURCE_EXHAUSTED``) if it is over the size limit."""
        data = message.SerializeToString()
        if len(data) > self._max:
            raise GrpcError(StatusCode.RESOURCE_EXHAUSTED, f"a reply is larger than the {self._max}-byte limit")
        await self.start()
        await self._send({"type": "http.response.body", "body": frame(data), "more_body": True})
        self.sent += 1

    async def finish(self, code: StatusCode, message: str) -> None:
        await self.start()
        await end_response(self._send, b"", code, message)


StreamHandler = Callable[[RequestT, PeerInfo, ServerStream[ResponseT]], Awaitable[None]]


@dataclass(frozen=True)
class StreamMethod(Generic[RequestT, ResponseT]):
    """A server-streaming method: how to decode its request, and the async function that writes the replies."""

    request_type: type[RequestT]
    handler: StreamHandler[RequestT, ResponseT]


async def serve_stream(
    path: str,
    method: StreamMethod[RequestT, ResponseT],
    request: RequestT,
    peer: PeerInfo,
    timeout: float | None,
    receive: Receive,
    send: Send,
    max_message_bytes: int,
) -> None:
    """Run ``method`` for one call until it ends, the caller leaves or the deadline passes. Never raises
    (besides cancellation): every outcome is sent as a status, or nothing is sent when the caller is gone."""
    stream: ServerStream[ResponseT] = ServerStream(send, max_message_bytes)
    handler = asyncio.ensure_future(method.handler(request, peer, stream))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({handler, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not handler.done():
            handler.cancel()
            with contextlib.suppress(BaseException):
                await handler
        gone.cancel()
    if handler not in done:
        if gone in done:
            log_event(log, "gRPC stream ended by the caller", logging.DEBUG, method=path, sent=stream.sent)
            return
        await stream.finish(StatusCode.DEADLINE_EXCEEDED, f"{path} did not finish within the deadline")
        return
    code, message = StatusCode.OK, ""
    exc = handler.exception() if not handler.cancelled() else None
    if isinstance(exc, GrpcError):
        code, message = exc.code, exc.message
    elif exc is not None or handler.cancelled():
        log.error("gRPC stream handler failed", exc_info=exc, extra={"fields": {"method": path}})
        code, message = StatusCode.UNKNOWN, f"{path} failed on the server; the server log has the details"
    await stream.finish(code, message)


async def _disconnected(receive: Receive) -> None:
    """Returns when the caller goes away (the request body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass
