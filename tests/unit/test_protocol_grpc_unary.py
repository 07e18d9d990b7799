"""The in-house unary gRPC handler, driven in-process as hypercorn drives it (ASGI messages)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lpnode.protocol import GrpcError, GrpcUnaryApp, PeerInfo, SamePortApp, StatusCode, UnaryMethod, is_grpc_request
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest

PATH = "/net.Orchestrator/GetOrchestrator"


def frame(payload: bytes, flag: int = 0) -> bytes:
    return bytes([flag]) + len(payload).to_bytes(4, "big") + payload


def scope(path: str = PATH, **headers: str) -> dict[str, Any]:
    base = {"content-type": "application/grpc", "te": "trailers"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return {
        "type": "http",
        "http_version": "2",
        "scheme": "https",
        "method": "POST",
        "path": path,
        "client": ("127.0.0.1", 5555),
        "headers": [(k.encode(), v.encode()) for k, v in base.items()],
    }


class Call:
    """What the app sent back, split as a gRPC client sees it."""

    def __init__(self, sent: list[dict[str, Any]]) -> None:
        self.sent = sent
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.trailers"]
        assert sent[0]["status"] == 200 and sent[0]["trailers"] is True
        assert (b"content-type", b"application/grpc") in sent[0]["headers"]
        self.body: bytes = sent[1]["body"]
        trailers = dict(sent[2]["headers"])
        self.code = StatusCode(int(trailers[b"grpc-status"]))
        self.message = trailers.get(b"grpc-message", b"").decode()

    def reply(self) -> OrchestratorInfo:
        assert self.body[0] == 0 and int.from_bytes(self.body[1:5], "big") == len(self.body) - 5
        return OrchestratorInfo.FromString(self.body[5:])


def run(app: Any, call_scope: dict[str, Any], chunks: list[bytes]) -> Call:
    async def go() -> list[dict[str, Any]]:
        queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await app(call_scope, receive, send)
        return sent

    return Call(asyncio.run(go()))


seen: list[tuple[OrchestratorRequest, PeerInfo]] = []


async def get_orchestrator(request: OrchestratorRequest, peer: PeerInfo) -> OrchestratorInfo:
    seen.append((request, peer))
    if request.sig == b"sleep":
        await asyncio.sleep(5)
    if request.sig == b"boom":
        raise RuntimeError("secret internal detail")
    if request.sig == b"deny":
        raise GrpcError(StatusCode.PERMISSION_DENIED, "bad signature: ünïcode 100%")
    return OrchestratorInfo(transcoder="https://o:8935", address=request.address)


APP = GrpcUnaryApp({PATH: UnaryMethod(OrchestratorRequest, get_orchestrator)}, max_message_bytes=1024)


def test_unary_call_decodes_the_request_and_frames_the_reply() -> None:
    body = frame(OrchestratorRequest(address=b"\x01" * 20).SerializeToString())
    call = run(APP, scope(x_custom="v", user_agent="grpc-python"), [body[:3], body[3:]])
    assert call.code is StatusCode.OK and call.message == ""
    assert call.reply() == OrchestratorInfo(transcoder="https://o:8935", address=b"\x01" * 20)
    request, peer = seen[-1]
    assert request.address == b"\x01" * 20
    assert peer.client == ("127.0.0.1", 5555) and peer.tls is True
    assert peer.metadata == {"content-type": "application/grpc", "x-custom": "v", "user-agent": "grpc-python"}


def test_empty_request_message_is_the_default_message() -> None:
    call = run(APP, scope(), [frame(b"")])
    assert call.code is StatusCode.OK
    assert seen[-1][0] == OrchestratorRequest()


def test_unknown_method_is_unimplemented_and_lists_the_known_ones() -> None:
    call = run(APP, scope("/net.Orchestrator/Ping"), [frame(b"")])
    assert call.code is StatusCode.UNIMPLEMENTED
    assert call.message == f"unknown method /net.Orchestrator/Ping; this server implements: {PATH}"
    assert call.body == b""


def test_handler_grpc_error_is_sent_with_a_percent_encoded_message() -> None:
    call = run(APP, scope(), [frame(OrchestratorRequest(sig=b"deny").SerializeToString())])
    assert call.code is StatusCode.PERMISSION_DENIED
    assert call.message == "bad signature: %C3%BCn%C3%AFcode 100%25"


def test_handler_crash_is_unknown_without_leaking_details(caplog: pytest.LogCaptureFixture) -> None:
    call = run(APP, scope(), [frame(OrchestratorRequest(sig=b"boom").SerializeToString())])
    assert call.code is StatusCode.UNKNOWN
    assert "secret" not in call.message and "server log" in call.message
    assert "secret internal detail" in caplog.text


def test_deadline_from_grpc_timeout_is_enforced() -> None:
    call = run(APP, scope(grpc_timeout="50m"), [frame(OrchestratorRequest(sig=b"sleep").SerializeToString())])
    assert call.code is StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (frame(b"x", flag=1), StatusCode.UNIMPLEMENTED, "compressed messages are not supported"),
        (frame(b"\xff\xff"), StatusCode.INVALID_ARGUMENT, "not a valid net.OrchestratorRequest"),
        (frame(b"") + frame(b""), StatusCode.UNIMPLEMENTED, "exactly one request message"),
        (frame(b"abc")[:6], StatusCode.INTERNAL, "truncated"),
        (b"\x00\x00", StatusCode.INTERNAL, "no complete gRPC message"),
        (frame(b"\x0a" + b"\x7f" + b"a" * 2000), StatusCode.RESOURCE_EXHAUSTED, "larger than the 1024-byte limit"),
    ],
    ids=["compressed", "undecodable", "two-messages", "truncated", "short", "oversize"],
)
def test_bad_requests_get_a_status_that_says_why(body: bytes, code: StatusCode, text: str) -> None:
    call = run(APP, scope(), [body])
    assert call.code is code
    assert text in call.message


def test_unsupported_content_type_is_refused() -> None:
    call = run(APP, scope(content_type="application/grpc+json"), [frame(b"")])
    assert call.code is StatusCode.UNIMPLEMENTED and "application/grpc+json" in call.message


def test_client_gone_before_the_body_ends_gets_no_reply() -> None:
    async def go() -> list[Any]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await APP(scope(), receive, send)
        return sent

    assert asyncio.run(go()) == []


@pytest.mark.parametrize(
    ("version", "content_type", "grpc"),
    [
        ("2", "application/grpc", True),
        ("2", "application/grpc+proto", True),
        ("2", "application/json", False),
        ("1.1", "application/grpc", False),
    ],
)
def test_routing_is_http2_plus_grpc_content_type(version: str, content_type: str, grpc: bool) -> None:
    call_scope = scope(content_type=content_type)
    call_scope["http_version"] = version
    assert is_grpc_request(call_scope) is grpc

    routed: list[str] = []

    def app(name: str) -> Any:
        async def handle(scope: Any, receive: Any, send: Any) -> None:
            routed.append(name)

        return handle

    asyncio.run(SamePortApp(app("http"), app("grpc"))(call_scope, None, None))  # type: ignore[arg-type]
    assert routed == ["grpc" if grpc else "http"]
    assert not is_grpc_request({"type": "lifespan"})
