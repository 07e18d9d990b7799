"""Server-streaming gRPC on the shared port, as a remote AI worker's registration uses it: a real hypercorn
server (plain h2c) on loopback and a real grpcio client, plus in-process ASGI checks of the framing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import grpc
import pytest
from starlette.applications import Starlette

from lpnode.protocol import GrpcError, PeerInfo, ServerStream, StatusCode, StreamMethod
from lpnode.protocol.grpc_unary import GrpcUnaryApp
from lpnode.protocol.lp_rpc_pb2 import AIJobData, NotifyAIJob, RegisterAIWorkerRequest
from lpnode.protocol.same_port import ServerSettings, serve_same_port

PATH = "/net.AIWorker/RegisterAIWorker"
ended: list[str] = []


async def register(request: RegisterAIWorkerRequest, peer: PeerInfo, stream: ServerStream[NotifyAIJob]) -> None:
    """Sends ``secret``-dependent replies: jobs then OK, a refusal, or jobs forever until cancelled."""
    try:
        if request.secret == "wrong":
            raise GrpcError(StatusCode.PERMISSION_DENIED, "invalid secret")
        await stream.start([("lpnode-worker-id", "w1")])
        for task_id in (1, 2, 3):
            await stream.send(NotifyAIJob(taskId=task_id, AIJobData=AIJobData(pipeline="llm", requestData=b"{}")))
        if request.secret == "forever":
            await asyncio.sleep(3600)
    finally:
        ended.append(request.secret)


METHODS = {PATH: StreamMethod(RegisterAIWorkerRequest, register)}


def frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def run_asgi(secret: str, disconnect_after: bool) -> list[dict[str, Any]]:
    """Drive the app as hypercorn does; the client leaves after its request when ``disconnect_after``."""

    async def go() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        queue = [{"type": "http.request", "body": frame(RegisterAIWorkerRequest(secret=secret).SerializeToString())}]
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            if not disconnect_after:
                await asyncio.sleep(3600)
            await asyncio.sleep(0.05)
            left.set()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "http",
            "http_version": "2",
            "path": PATH,
            "headers": [(b"content-type", b"application/grpc")],
        }
        await asyncio.wait_for(GrpcUnaryApp(METHODS)(scope, receive, send), 5)
        return sent

    return asyncio.run(go())


def test_each_reply_is_its_own_frame_and_the_call_ends_with_ok_trailers() -> None:
    sent = run_asgi("ok", disconnect_after=False)
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 4 + [
        "http.response.trailers"
    ]
    assert (b"lpnode-worker-id", b"w1") in sent[0]["headers"] and sent[0]["trailers"] is True
    for index, message in enumerate(sent[1:4], start=1):
        body = message["body"]
        assert message["more_body"] is True and body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
        assert NotifyAIJob.FromString(body[5:]).taskId == index
    assert sent[4] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert dict(sent[5]["headers"])[b"grpc-status"] == b"0"


def test_a_refusal_is_headers_empty_body_and_the_status() -> None:
    sent = run_asgi("wrong", disconnect_after=False)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.trailers"]
    trailers = dict(sent[2]["headers"])
    assert trailers[b"grpc-status"] == b"7" and trailers[b"grpc-message"] == b"invalid secret"


def test_the_caller_leaving_cancels_the_handler_at_once() -> None:
    ended.clear()
    sent = run_asgi("forever", disconnect_after=True)  # wait_for(5 s) fails if the handler is not cancelled
    assert ended == ["forever"]
    assert sent[-1]["type"] == "http.response.body" and sent[-1]["more_body"] is True  # no status: nobody to tell


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(30)
def test_grpcio_client_reads_the_stream_and_its_refusal_over_h2c() -> None:
    async def go() -> None:
        # hypercorn does not count a connection idle again after a client reset one of its streams, so its
        # shutdown waits out the graceful timeout while grpcio keeps the connection: keep that short here.
        settings = ServerSettings("127.0.0.1", free_port(), graceful_timeout=0.5)
        stop = asyncio.Event()
        server = asyncio.ensure_future(serve_same_port(Starlette(), METHODS, settings, stop=stop, handle_signals=False))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.port}") as channel:
                await asyncio.wait_for(channel.channel_ready(), 10)
                call_of = channel.unary_stream(
                    PATH,
                    request_serializer=RegisterAIWorkerRequest.SerializeToString,
                    response_deserializer=NotifyAIJob.FromString,
                )
                ok = call_of(RegisterAIWorkerRequest(secret="ok"))
                assert dict(await ok.initial_metadata())["lpnode-worker-id"] == "w1"
                assert [job.taskId async for job in ok] == [1, 2, 3]
                assert await ok.code() == grpc.StatusCode.OK

                refused = call_of(RegisterAIWorkerRequest(secret="wrong"))
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    _ = [job async for job in refused]
                assert (info.value.code(), info.value.details()) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "invalid secret",
                )

                ended.clear()
                forever = call_of(RegisterAIWorkerRequest(secret="forever"))
                assert [(await forever.read()).taskId for _ in range(3)] == [1, 2, 3]
                forever.cancel()
                for _ in range(100):  # the server notices the cancelled call within a second
                    if ended:
                        break
                    await asyncio.sleep(0.01)
                assert ended == ["forever"]
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(server, 10)

    asyncio.run(go())
