"""The orchestrator's side of ``RegisterAIWorker``, driven in-process: who is refused and with what message
(go-livepeer workers act on the exact text), and capacity appearing and leaving with the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lpnode.orchestrator.remote_workers import RemoteWorkers
from lpnode.protocol import GrpcError, PeerInfo, StatusCode
from lpnode.protocol.capabilities import ModelOffer, build_capabilities
from lpnode.protocol.lp_rpc_pb2 import NotifyAIJob, RegisterAIWorkerRequest
from lpnode.results import ResultStore

PEER = PeerInfo(client=("10.0.0.9", 40000), tls=True, authority="o:8935", metadata={})
T2I = ModelOffer("text-to-image", "m", warm=True, capacity=2, runner_version="0.1.0")


def registration(secret: str = "s", offers: tuple[ModelOffer, ...] = (T2I,), version: str = "") -> Any:
    caps = build_capabilities(offers, version=version) if version else build_capabilities(offers)
    return RegisterAIWorkerRequest(secret=secret, capabilities=caps)


def workers(tmp_path: Path, secret: str = "s") -> RemoteWorkers:
    return RemoteWorkers(secret, ResultStore(tmp_path), "https://o:8935", CollectorRegistry())


class Sink:
    """Collects what the handler would send (it is a ServerStream as far as the handler knows)."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []
        self.sent: list[NotifyAIJob] = []

    async def start(self, metadata: Any = ()) -> None:
        self.metadata = list(metadata)

    async def send(self, message: NotifyAIJob) -> None:
        self.sent.append(message)


def refusal(registry: RemoteWorkers, request: RegisterAIWorkerRequest) -> GrpcError:
    async def go() -> GrpcError:
        with pytest.raises(GrpcError) as info:
            await registry.register(request, PEER, Sink())  # type: ignore[arg-type]
        return info.value

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("secret", "request_", "code", "message"),
    [
        ("s", registration("wrong"), StatusCode.PERMISSION_DENIED, "invalid secret"),
        ("", registration(""), StatusCode.PERMISSION_DENIED, "invalid secret: this orchestrator takes no remote"),
        ("s", registration(offers=()), StatusCode.FAILED_PRECONDITION, "zero capacity"),
        ("s", registration(version="0.0.1"), StatusCode.FAILED_PRECONDITION, "worker version 0.0.1 is older"),
    ],
    ids=["wrong-secret", "no-secret-here", "zero-capacity", "too-old"],
)
def test_refusals_say_what_go_workers_look_for(
    tmp_path: Path, secret: str, request_: RegisterAIWorkerRequest, code: StatusCode, message: str
) -> None:
    error = refusal(workers(tmp_path, secret), request_)
    assert error.code == code and error.message.startswith(message)
    if message == "invalid secret":
        assert error.message == "invalid secret"  # exactly: go-livepeer workers stop on this text


def test_capacity_is_advertised_while_the_stream_is_open(tmp_path: Path) -> None:
    async def go() -> None:
        registry = workers(tmp_path)
        sink = Sink()
        stream = asyncio.ensure_future(registry.register(registration(), PEER, sink))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        status = registry.snapshot()[("text-to-image", "m")]
        assert (status.capacity, status.idle, status.warm, status.version) == (2, 2, True, "0.1.0")
        assert sink.metadata and sink.metadata[0][0] == "lpnode-worker-id"
        lease = registry.reserve("text-to-image", "m")
        assert lease is not None and registry.snapshot()[("text-to-image", "m")].in_use == 1
        [worker] = registry.status()
        assert worker["address"] == "10.0.0.9:40000" and worker["models"][0]["in_use"] == 1
        stream.cancel()  # the worker went away
        with pytest.raises(asyncio.CancelledError):
            await stream
        assert registry.snapshot() == {} and registry.status() == []
        with pytest.raises(Exception, match="insufficient capacity"):  # 503: a worker may come back
            registry.reserve("text-to-image", "m")
        assert registry.reserve("text-to-image", "never-offered") is None  # the local answer (400) stands

    asyncio.run(go())
