"""llm over HTTP on a real `lpnode runner` with the tiny chat model: whole answers, SSE streams,
disconnects, concurrency, bad input, and the OpenAI-compatible upstream backend."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests

from procs import RunnerProcess

MODEL = "lpnode/tiny-llm"
TOKEN = "llm-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def runner(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    proc: RunnerProcess = start_runner("llm", MODEL, "--auth-token", TOKEN)
    assert proc.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", proc.log()
    return proc


def sse_events(response: requests.Response) -> Iterator[str]:
    """The data payloads of a text/event-stream, line by line as they arrive."""
    for line in response.iter_lines(decode_unicode=True):
        if line:
            assert line.startswith("data: "), line
            yield line[len("data: ") :]


def metric(runner: RunnerProcess, name: str) -> float:
    for line in runner.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_whole_answer_has_one_message_and_consistent_usage(runner: RunnerProcess) -> None:
    r = runner.post("/llm", json={"messages": HELLO, "max_tokens": 12}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["model"] == MODEL and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["delta"] is None
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_sends_chunks_then_a_finish_then_done(runner: RunnerProcess) -> None:
    body = {"messages": HELLO, "max_tokens": 10, "temperature": 0, "stream": True}
    with runner.post("/llm", json=body, headers=AUTH, stream=True) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = list(sse_events(r))
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len(chunks) >= 2
    assert len({c["id"] for c in chunks}) == 1
    for chunk in chunks:
        (choice,) = chunk["choices"]
        assert choice["message"] is None and choice["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [""] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"  # greedy tiny model never says <|end|>
    completions = [c["usage"]["completion_tokens"] for c in chunks]
    assert completions == sorted(completions) and completions[-1] == 10


def test_greedy_answers_are_reproducible_streamed_or_not(runner: RunnerProcess) -> None:
    body = {"messages": HELLO, "max_tokens": 10, "temperature": 0}
    whole = runner.post("/llm", json=body, headers=AUTH).json()["choices"][0]["message"]["content"]
    with runner.post("/llm", json={**body, "stream": True}, headers=AUTH, stream=True) as r:
        pieces = [json.loads(p)["choices"][0]["delta"]["content"] for p in sse_events(r) if p != "[DONE]"]
    assert "".join(pieces) == whole


def test_disconnecting_mid_stream_stops_generation(runner: RunnerProcess) -> None:
    before = metric(runner, "lpnode_runner_jobs_cancelled_total")
    body = {"messages": HELLO, "max_tokens": 480, "temperature": 0, "stream": True}
    with runner.post("/llm", json=body, headers=AUTH, stream=True) as r:
        events = sse_events(r)
        next(events)
        next(events)
    # The connection is closed; generation must stop long before 480 tokens.
    deadline = time.monotonic() + 10
    while metric(runner, "lpnode_runner_jobs_cancelled_total") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(runner, "lpnode_runner_jobs_cancelled_total") == before + 1
    cancelled = [line for line in runner.log().splitlines() if "job cancelled" in line][-1]
    steps = int(cancelled.split("steps_done=")[1].split()[0])
    assert steps < 480
    assert runner.health() == "IDLE"


def test_four_concurrent_streams_all_complete(runner: RunnerProcess) -> None:
    results: list[tuple[int, str]] = []

    def one(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 24, "stream": True}
        with runner.post("/llm", json=body, headers=AUTH, stream=True) as r:
            payloads = list(sse_events(r))
        results.append((r.status_code, payloads[-1]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [(200, "[DONE]")] * 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": []}, "messages must hold at least one message."),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role must be one of system, user, assistant, got 'robot'.",
        ),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens must be at least 1, got 0."),
        ({"messages": HELLO, "temperature": 3}, "temperature must be between 0 and 2, got 3.0."),
        ({"messages": HELLO, "top_p": 0}, "top_p must be greater than 0 and at most 1, got 0.0."),
        ({"messages": HELLO, "top_k": 0}, "top_k must be -1 (off) or at least 1, got 0."),
        (
            {"messages": HELLO, "model": "meta-llama/other"},
            f"pipeline configured with {MODEL} but called with meta-llama/other",
        ),
        ({"messages": HELLO, "max_tokens": 600, "stream": True}, None),
    ],
)
def test_bad_requests_get_400_streamed_or_not(runner: RunnerProcess, body: dict[str, Any], message: str | None) -> None:
    for stream in (False, True):
        r = runner.post("/llm", json={**body, "stream": stream}, headers=AUTH)
        assert r.status_code == 400, r.text[:300]
        if message:
            assert r.json() == {"detail": {"msg": message}}
        else:  # too long for the model's context
            assert "max_tokens" in r.json()["detail"]["msg"]
    assert runner.health() == "IDLE"


def test_auth_and_schema_errors(runner: RunnerProcess) -> None:
    r = runner.post("/llm", json={"messages": HELLO})
    assert r.status_code == 401
    assert r.json() == {"detail": {"msg": "Invalid bearer token"}}
    r = runner.post("/llm", json={"messages": "hello"}, headers=AUTH)
    assert r.status_code == 422


# --- the OpenAI-compatible upstream backend -------------------------------------------------------
# Ollama cannot run here (its models cannot be downloaded), so a small server that speaks the same
# OpenAI-compatible API stands in for it.


class FakeOpenAI(BaseHTTPRequestHandler):
    models: ClassVar[list[str]] = ["llama3.1:8b"]
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.seen.append(body)
        if body["model"] not in self.models:
            self._send(404, {"error": {"message": f"model '{body['model']}' not found"}})
            return
        words = ["Hello", " from", " the", " upstream", "."][: body["max_tokens"]]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(words):
            finish = "stop" if i == len(words) - 1 else None
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upstream_backend_serves_the_llm_route(start_runner, upstream: str) -> None:  # type: ignore[no-untyped-def]
    proc = start_runner("llm", "meta-llama/Meta-Llama-3.1-8B-Instruct", "--llm-upstream", upstream)
    assert proc.wait_status({"IDLE", "ERROR"})[-1] == "IDLE", proc.log()
    whole = proc.post("/llm", json={"messages": HELLO, "max_tokens": 64}).json()
    assert whole["model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct"
    assert whole["choices"][0]["message"]["content"] == "Hello from the upstream."
    assert whole["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    assert FakeOpenAI.seen[-1]["model"] == "llama3.1:8b"  # the Hugging Face id mapped to the Ollama tag
    with proc.post("/llm", json={"messages": HELLO, "max_tokens": 3, "stream": True}, stream=True) as r:
        payloads = list(sse_events(r))
    assert payloads[-1] == "[DONE]"
    text = "".join(json.loads(p)["choices"][0]["delta"]["content"] for p in payloads[:-1])
    assert text == "Hello from the"
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"


def test_upstream_without_the_model_or_unreachable_fails_the_load(start_runner, upstream: str) -> None:  # type: ignore[no-untyped-def]
    missing = start_runner("llm", "google/gemma-2-9b-it", "--llm-upstream", upstream)
    assert missing.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    assert "does not serve 'gemma2:9b'" in missing.log() and "ollama pull gemma2:9b" in missing.log()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    gone = start_runner("llm", "x/y", "--llm-upstream", closed)
    assert gone.wait_status({"IDLE", "ERROR"})[-1] == "ERROR"
    assert f"cannot reach the LLM upstream at {closed}" in gone.log()
