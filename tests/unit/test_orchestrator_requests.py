"""What the orchestrator reads from a job before relaying it: the model id in the body, the two Livepeer
headers, go-livepeer's capability compatibility rules, and the runner's error answers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from lpnode.errors import (
    BadRequestError,
    ForbiddenError,
    JobError,
    PayloadTooLargeError,
    PaymentRequiredError,
    UnavailableError,
    UnsupportedMediaError,
)
from lpnode.orchestrator.credentials import check_credentials
from lpnode.orchestrator.job_body import read_model_id
from lpnode.orchestrator.settings import listen_address, parse_gpus, service_url
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, incompatibility
from lpnode.protocol.job_hop import runner_error
from lpnode.protocol.lp_rpc_pb2 import Capabilities, Payment, SegData

BOUNDARY = "b0undary"


def multipart(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read(content_type: str, data: bytes, size: int = 7, limit: int = 1 << 20) -> tuple[str, bytes, bool]:
    """(model_id, every byte the runner would get, whether some of the body was left to stream)."""

    async def go() -> tuple[str, bytes, bool]:
        body = await read_model_id(content_type, chunked(data, size), limit)
        streamed = body.rest is not None
        return body.model_id, b"".join([c async for c in body.chunks()]), streamed

    return asyncio.run(go())


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_model_id_before_the_file_leaves_the_file_to_stream(size: int) -> None:
    data = multipart(("model_id", b"org/model", None), ("image", b"\x89PNG" * 5000, "a.png"))
    model_id, replay, streamed = read(f"multipart/form-data; boundary={BOUNDARY}", data, size)
    assert model_id == "org/model"
    assert replay == data, "the runner must get the exact bytes"
    assert streamed


def test_model_id_after_the_file_is_found_and_the_body_kept_whole() -> None:
    data = multipart(("image", b"x" * 10000, "a.png"), ("prompt", b"p", None), ("model_id", b" org/m \r", None))
    model_id, replay, _ = read(f"multipart/form-data; boundary={BOUNDARY}", data)
    assert (model_id, replay) == ("org/m", data)


def test_form_without_model_id_reads_as_empty() -> None:
    data = multipart(("image", b"x", "a.png"))
    assert read(f"multipart/form-data; boundary={BOUNDARY}", data)[:2] == ("", data)


def test_json_body_is_kept_byte_for_byte() -> None:
    data = b'{"prompt": "x",  "model_id": "org/m"}'
    assert read("application/json; charset=utf-8", data) == ("org/m", data, False)


@pytest.mark.parametrize(
    ("content_type", "data", "error", "text"),
    [
        ("application/json", b"{", BadRequestError, "not valid JSON"),
        ("application/json", b"[1]", BadRequestError, "must be an object"),
        ("application/json", b'{"model_id": 3}', BadRequestError, "model_id must be a string"),
        ("text/plain", b"x", UnsupportedMediaError, "unsupported Content-Type text/plain"),
        ("multipart/form-data", b"x", BadRequestError, "no boundary"),
        ("application/json", b'{"a": "' + b"x" * 200 + b'"}', PayloadTooLargeError, "over"),
    ],
)
def test_unreadable_bodies_are_refused_with_the_reason(
    content_type: str, data: bytes, error: type[JobError], text: str
) -> None:
    with pytest.raises(error, match=text):
        read(content_type, data, limit=100)


def test_form_whose_model_id_comes_too_late_says_to_send_it_first() -> None:
    data = multipart(("image", b"x" * 500, "a.png"), ("model_id", b"m", None))
    with pytest.raises(PayloadTooLargeError, match="send the model_id field before the files"):
        read(f"multipart/form-data; boundary={BOUNDARY}", data, limit=200)


# --- headers -----------------------------------------------------------------------------------------

OFFERED = build_capabilities([ModelOffer("text-to-image", "org/m", warm=True, capacity=2, runner_version="0.14.1")])


def offered() -> Capabilities:
    return OFFERED


def seg_header(seg: SegData) -> str:
    return base64.b64encode(seg.SerializeToString()).decode()


def test_good_headers_pass_and_name_the_session() -> None:
    tokens = AuthTokens()
    token = tokens.issue("abc")
    headers = {"livepeer-segment": seg_header(SegData(auth_token=token)), "livepeer-payment": ""}
    assert check_credentials(headers, tokens, offered).session_id == "abc"
    paid = base64.b64encode(Payment(sender=b"\x01" * 20).SerializeToString()).decode().rstrip("=")
    assert check_credentials(headers | {"livepeer-payment": paid}, tokens, offered).payment.sender == b"\x01" * 20


def test_payment_is_checked_before_the_segment() -> None:
    with pytest.raises(PaymentRequiredError):
        check_credentials({"livepeer-payment": "***"}, AuthTokens(), offered)
    with pytest.raises(ForbiddenError, match="missing Livepeer-Segment"):
        check_credentials({}, AuthTokens(), offered)
    with pytest.raises(ForbiddenError, match="could not decode"):
        check_credentials({"livepeer-segment": base64.b64encode(b"\xff\xff").decode()}, AuthTokens(), offered)


def wanted(model: str = "org/m", warm: bool = False, version: str = "", cap: int = 27) -> Capabilities:
    caps = Capabilities(bitstring=[1 << cap])
    constraint = caps.constraints.PerCapability[cap].models[model]
    constraint.warm = warm
    constraint.runnerVersion = version
    return caps


@pytest.mark.parametrize(
    ("caps", "reason"),
    [
        (wanted(), None),
        (wanted(warm=True, version="0.14.0"), None),
        (Capabilities(bitstring=[1 << 27]), None),
        (wanted(cap=31, model="whisper"), "capabilities not offered here: audio-to-text"),
        (wanted(model="org/other"), "text-to-image model 'org/other' is not offered here"),
        (wanted(version="v0.15.0-rc1"), "runs runner version 0.14.1, the gateway needs v0.15.0-rc1"),
    ],
)
def test_capability_compatibility_follows_go_livepeer(caps: Capabilities, reason: str | None) -> None:
    found = incompatibility(caps, OFFERED)
    assert found == reason if reason is None else reason in (found or "")


def test_cold_model_does_not_satisfy_a_gateway_that_wants_it_warm() -> None:
    offered = build_capabilities([ModelOffer("text-to-image", "org/m", warm=False, capacity=1)])
    assert "offered cold" in (incompatibility(wanted(warm=True), offered) or "")


# --- runner errors -----------------------------------------------------------------------------------


def test_runner_errors_keep_go_livepeers_text_and_a_fitting_status() -> None:
    refused = runner_error("upscale", 400, b'{"detail": {"msg": "bad image"}}')
    assert (refused.status_code, refused.message) == (400, "upscale container returned 400: bad image")
    invalid = runner_error("llm", 422, b'{"detail": [{"loc": ["body", "max_tokens"], "msg": "too big"}]}')
    assert (invalid.status_code, invalid.message) == (400, "llm container returned 400: max_tokens: too big")
    busy = runner_error("llm", 503, b"{}", retry_after="4")
    assert isinstance(busy, UnavailableError) and busy.message == "insufficient capacity" and busy.retry_after == 4
    failed = runner_error("llm", 500, b"boom")
    assert (failed.status_code, failed.message) == (500, "llm container returned 500: boom")
    assert "token of its aiModels.json entry" in runner_error("llm", 401, b"").message


# --- settings ----------------------------------------------------------------------------------------


def test_service_address_and_listen_address_follow_go_livepeer() -> None:
    assert service_url("127.0.0.1:9000") == "https://127.0.0.1:9000"
    assert service_url("http://localhost") == "http://localhost:8935"
    assert service_url("[::1]:9000") == "https://[::1]:9000"
    assert listen_address("https://127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert listen_address("https://o.example.com:9000") == ("0.0.0.0", 9000)
    assert listen_address("https://o.example.com:9000", ":7000") == ("0.0.0.0", 7000)
    assert listen_address("https://o.example.com:9000", "10.0.0.2:7000") == ("10.0.0.2", 7000)


def test_nvidia_flag() -> None:
    assert parse_gpus("", ["0"]) == []
    assert parse_gpus("all", ["0", "1"]) == ["0", "1"]
    assert parse_gpus("0, 2", []) == ["0", "2"]
    with pytest.raises(Exception, match="no NVIDIA GPU was found"):
        parse_gpus("all", [])
    with pytest.raises(Exception, match="lists a GPU twice"):
        parse_gpus("1,1", [])
