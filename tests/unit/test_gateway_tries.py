"""How the gateway treats each answer an orchestrator can give, tried through the in-process transport.

The orchestrators here are small scripted ASGI apps that answer a fixed status, or never answer: they stand in
for misbehaving peers (a hung or failing go-livepeer node cannot run here). Everything on the gateway's side is
the real code: the directory, the selector, the forwarder, the tries loop and the transport's deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from lpnode.errors import BadRequestError, GatewayTimeoutError, JobError, UnavailableError
from lpnode.gateway import forward
from lpnode.gateway.capacity_queue import CapacityQueues
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Forwarder, Job
from lpnode.gateway.job_wrapper import JobRecord
from lpnode.gateway.selection import LatencySelector, Stats
from lpnode.gateway.server import Gateway
from lpnode.gateway.settings import GatewaySettings, PriceCaps
from lpnode.gateway.transport import AsgiTransport
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, build_capabilities_prices
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo
from lpnode.results import ResultStore

MODEL = "org/model"
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}
Handler = Callable[[Request], Awaitable[Response]]


class ScriptedOrchestrator:
    """Answers ``POST /llm`` with ``handler``; counts the jobs it got and the info fetches."""

    def __init__(self, url: str, handler: Handler) -> None:
        self.url = url
        self.jobs = 0
        self.info_fetches = 0
        self.tokens = AuthTokens()

        async def job(request: Request) -> Response:
            self.jobs += 1
            await request.body()
            return await handler(request)

        self.app = Starlette(routes=[Route("/llm", job, methods=["POST"])])

    def info(self) -> OrchestratorInfo:
        self.info_fetches += 1
        offers = [ModelOffer("llm", MODEL, warm=True, capacity=4)]
        return OrchestratorInfo(
            transcoder=self.url,
            capabilities=build_capabilities(offers),
            capabilities_prices=build_capabilities_prices(offers),
            auth_token=self.tokens.issue(),
        )


class InProcessInfo:
    """``GetOrchestrator`` answered in process, in place of the gRPC client."""

    def __init__(self, orchestrators: dict[str, ScriptedOrchestrator]) -> None:
        self.orchestrators = orchestrators

    async def get_info(self, url: str, request: Any = None, timeout: float = 5.0) -> OrchestratorInfo:
        return self.orchestrators[url].info()


def answering(status: int, body: str = "") -> Handler:
    async def handler(request: Request) -> Response:
        if status == 200:
            return JSONResponse(ANSWER)
        return PlainTextResponse(body + "\n", status_code=status)

    return handler


async def never_answers(request: Request) -> Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def serve(handlers: list[Handler | None], tmp_path: Any, deadline_seconds: float = 10.0) -> tuple[Any, ...]:
    """Run one llm job through a forwarder in front of one scripted orchestrator per handler, tried in the
    order given (``None``: it answers ``GetOrchestrator`` but nothing listens where jobs go). Returns (the answer
    or the JobError, the orchestrators, the directory, seconds taken)."""
    orchs = {
        f"http://orch{i}.test:8935": ScriptedOrchestrator(f"http://orch{i}.test:8935", h or never_answers)
        for i, h in enumerate(handlers)
    }
    listening = {url for url, h in zip(orchs, handlers, strict=True) if h is not None}

    async def scenario() -> tuple[Any, ...]:
        directory = Directory(InProcessInfo(orchs), list(orchs))  # type: ignore[arg-type]
        await directory.refresh()
        for rank, orch in enumerate(directory.known()):
            orch.response_seconds = rank  # discovery order = the order given
        transport = AsgiTransport({url: o.app for url, o in orchs.items() if url in listening})
        async with aiohttp.ClientSession() as session:
            forwarder = Forwarder(
                directory,
                _InOrder(),
                Stats(),
                PriceCaps(),
                transport,
                session,
                ResultStore(tmp_path / "results"),
                "http://gateway.test",
            )
            job = Job("llm", MODEL, json.dumps({"model": MODEL}).encode(), "application/json", "rid")
            started = time.monotonic()
            try:
                result: Any = await forwarder.run(job, None, started + deadline_seconds, JobRecord())
            except JobError as exc:
                result = exc
            return result, list(orchs.values()), directory, time.monotonic() - started

    return asyncio.run(scenario())


class _InOrder(LatencySelector):
    """Discovery order, so each scenario knows which orchestrator is tried first."""

    def order(self, offers: Any, stats: Stats) -> list[Any]:
        return list(offers)


def suspended(directory: Directory) -> list[bool]:
    return [o.suspended for o in directory.known()]


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_the_callers_mistake_goes_back_to_the_caller_without_a_retry(status: int, tmp_path: Any) -> None:
    words = "llm container returned 400: prompt must not be empty" if status == 400 else "not acceptable"
    result, (first, second), directory, _ = serve([answering(status, words), answering(200)], tmp_path)
    assert isinstance(result, JobError)
    assert result.status_code == (400 if status == 422 else status)
    if status == 400:
        assert isinstance(result, BadRequestError) and result.message == "prompt must not be empty"
    assert (first.jobs, second.jobs) == (1, 0)
    assert suspended(directory) == [False, False]


def test_at_capacity_moves_on_without_blame(tmp_path: Any) -> None:
    result, (first, second), directory, _ = serve([answering(503, "insufficient capacity"), answering(200)], tmp_path)
    assert isinstance(result, Response) and json.loads(bytes(result.body)) == ANSWER
    assert (first.jobs, second.jobs) == (1, 1)
    assert suspended(directory) == [False, False]


@pytest.mark.parametrize("status", [500, 502, 404])
def test_another_failure_suspends_that_offer_only_and_moves_on(status: int, tmp_path: Any) -> None:
    result, (first, second), directory, _ = serve([answering(status, "boom"), answering(200)], tmp_path)
    assert isinstance(result, Response) and result.status_code == 200
    assert (first.jobs, second.jobs) == (1, 1)
    failed = next(iter(directory.known()))
    assert failed.offer_suspended("llm", MODEL) and not failed.offer_suspended("llm", "another/model")
    assert suspended(directory) == [False, False]  # the node answered: its other pipelines and models stay
    assert f"answered {status}: boom" in failed.offer_suspensions[("llm", MODEL)].problem


@pytest.mark.parametrize("status", [402, 403])
def test_refused_credentials_are_fetched_again_and_the_same_orchestrator_tried_once_more(
    status: int, tmp_path: Any
) -> None:
    calls = 0

    async def refuses_once(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return await answering(status if calls == 1 else 200, "expired token")(request)

    result, (only,), directory, _ = serve([refuses_once], tmp_path)
    assert isinstance(result, Response) and result.status_code == 200
    assert only.jobs == 2 and only.info_fetches == 2  # discovery, then the fresh credentials
    assert suspended(directory) == [False]


def test_credentials_refused_twice_are_not_tried_a_third_time(tmp_path: Any) -> None:
    result, (only,), _, _ = serve([answering(403, "invalid auth token")], tmp_path)
    assert isinstance(result, UnavailableError)
    assert only.jobs == 2
    assert "refused our credentials (403: invalid auth token)" in result.message


def test_no_answer_at_all_suspends_and_moves_on(tmp_path: Any) -> None:
    result, (gone, other), directory, _ = serve([None, answering(200)], tmp_path)
    assert isinstance(result, Response) and result.status_code == 200
    assert (gone.jobs, other.jobs) == (0, 1)
    assert suspended(directory) == [True, False]
    assert "no answer" in next(iter(directory.known())).problem


def test_an_orchestrator_that_never_answers_is_abandoned_at_the_deadline(tmp_path: Any) -> None:
    result, (silent, other), directory, seconds = serve([never_answers, answering(200)], tmp_path, 2.5)
    assert isinstance(result, GatewayTimeoutError) and result.status_code == 504
    assert "no answer before the deadline" in result.message
    assert 2.4 < seconds < 4.5
    assert (silent.jobs, other.jobs) == (1, 0)
    assert suspended(directory) == [True, False]


def test_an_orchestrator_left_too_little_time_is_not_blamed_for_the_deadline(tmp_path: Any) -> None:
    result, (silent, _), directory, _ = serve([never_answers, answering(200)], tmp_path, 0.5)
    assert isinstance(result, GatewayTimeoutError) and silent.jobs == 1
    assert suspended(directory) == [False, False]


def test_when_every_orchestrator_fails_the_caller_gets_each_reason(tmp_path: Any) -> None:
    result, _, _, _ = serve([answering(502, "bad gateway"), answering(500, "gpu fell off")], tmp_path)
    assert isinstance(result, UnavailableError) and result.status_code == 503
    assert result.headers == {"Retry-After": "1"}
    assert "answered 502: bad gateway" in result.message and "answered 500: gpu fell off" in result.message


def test_an_answer_over_the_limit_is_refused_and_the_next_orchestrator_serves(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forward, "ANSWER_LIMIT", 8)

    async def small(request: Request) -> Response:
        return PlainTextResponse("{}", media_type="application/json")

    result, (big, other), directory, _ = serve([answering(200), small], tmp_path)
    assert isinstance(result, Response) and bytes(result.body) == b"{}"
    assert (big.jobs, other.jobs) == (1, 1)
    assert suspended(directory) == [True, False]
    assert "over 8 bytes" in next(iter(directory.known())).problem


# --- at capacity: the queue ----------------------------------------------------------------------------------


def one_at_a_time(seconds: float) -> Handler:
    """An orchestrator with one place: a job arriving while another runs gets go-livepeer's 503."""
    busy = asyncio.Lock()

    async def handler(request: Request) -> Response:
        if busy.locked():
            return PlainTextResponse("insufficient capacity\n", status_code=503, headers={"Retry-After": "1"})
        async with busy:
            await asyncio.sleep(seconds)
        return JSONResponse(ANSWER)

    return handler


def burst(
    handler: Handler, count: int, tmp_path: Any, *, queues: CapacityQueues, deadline: float = 10.0, keys: int = 1
) -> tuple[list[Any], ScriptedOrchestrator]:
    """``count`` concurrent llm jobs (API keys 0..keys-1 in turn) through one forwarder to one orchestrator."""
    orch = ScriptedOrchestrator("http://orch.test:8935", handler)

    async def scenario() -> list[Any]:
        directory = Directory(InProcessInfo({orch.url: orch}), [orch.url])  # type: ignore[arg-type]
        await directory.refresh()
        async with aiohttp.ClientSession() as session:
            forwarder = Forwarder(
                directory, _InOrder(), Stats(), PriceCaps(), AsgiTransport({orch.url: orch.app}), session,
                ResultStore(tmp_path / "results"), "http://gateway.test", queues,
            )  # fmt: skip

            async def one(i: int) -> Any:
                job = Job("llm", MODEL, b"{}", "application/json", f"r{i}")
                try:
                    return await forwarder.run(job, None, time.monotonic() + deadline, JobRecord(key_id=i % keys))
                except JobError as exc:
                    return exc

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(scenario()), orch


def test_a_burst_on_a_model_at_capacity_waits_its_turn_instead_of_failing(tmp_path: Any) -> None:
    results, orch = burst(one_at_a_time(0.02), 24, tmp_path, queues=CapacityQueues())
    assert [getattr(r, "status_code", None) for r in results] == [200] * 24
    assert orch.jobs >= 24  # every job was served; the ones turned away waited and came back


def test_a_full_queue_answers_503_with_retry_after(tmp_path: Any) -> None:
    results, _ = burst(one_at_a_time(0.5), 6, tmp_path, queues=CapacityQueues(size=2))
    refused = [r for r in results if isinstance(r, JobError)]
    assert refused and all(isinstance(r, UnavailableError) for r in refused)
    assert all("queue for it is full (2 waiting)" in r.message and r.headers["Retry-After"] for r in refused)
    assert sum(1 for r in results if isinstance(r, Response)) >= 3


def test_a_wait_past_its_bound_answers_503_and_past_the_deadline_504(tmp_path: Any) -> None:
    results, _ = burst(one_at_a_time(1.0), 2, tmp_path, queues=CapacityQueues(max_wait=0.3))
    waited = next(r for r in results if isinstance(r, JobError))
    assert isinstance(waited, UnavailableError) and "stayed at capacity for 0.3s" in waited.message
    results, _ = burst(one_at_a_time(1.0), 2, tmp_path, queues=CapacityQueues(), deadline=0.8)
    late = next(r for r in results if isinstance(r, JobError) and "stayed at capacity" in r.message)
    assert isinstance(late, GatewayTimeoutError) and late.headers == {"Retry-After": "1"}


def test_waiters_are_woken_in_turn_between_api_keys() -> None:
    async def scenario() -> list[str]:
        queues = CapacityQueues()
        order: list[str] = []

        async def wait(name: str, key: int) -> None:
            await queues.wait("llm", MODEL, key, time.monotonic() + 5)
            order.append(name)

        tasks = [asyncio.ensure_future(wait(f"a{i}", 1)) for i in range(3)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.ensure_future(wait("b0", 2)))
        await asyncio.sleep(0.01)
        for _ in range(4):
            queues.freed("llm", MODEL)
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["a0", "b0", "a1", "a2"]


def test_the_default_model_is_chosen_among_every_orchestrator_suspended_or_not(tmp_path: Any) -> None:
    orch = ScriptedOrchestrator("http://orch.test:8935", answering(200))

    async def scenario() -> tuple[str, str]:
        gateway = Gateway(GatewaySettings(orchestrators=[orch.url], data_dir=tmp_path))
        gateway.directory = Directory(InProcessInfo({orch.url: orch}), [orch.url])  # type: ignore[arg-type]
        await gateway.directory.refresh()
        before = gateway.default_model("llm")
        gateway.directory.suspend(orch.url, "answered 500")
        after = gateway.default_model("llm")
        await asyncio.to_thread(gateway.usage.close)
        gateway.async_jobs.close()
        return before, after

    assert asyncio.run(scenario()) == (MODEL, MODEL)


@pytest.mark.parametrize(
    ("refusal", "same_again"),
    [("TicketParams expired", True), ("Insufficient balance", True), ("invalid ticket senderNonce", False)],
)
def test_a_refused_payment_is_paid_afresh_once_unless_the_nonce_was_bad(
    refusal: str, same_again: bool, tmp_path: Any
) -> None:
    calls = 0

    async def refuses_once(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return await answering(400 if calls == 1 else 200, refusal)(request)

    result, (first, second), _, _ = serve([refuses_once, answering(200)], tmp_path)
    assert isinstance(result, Response) and result.status_code == 200
    assert (first.jobs, second.jobs) == ((2, 0) if same_again else (1, 1))
