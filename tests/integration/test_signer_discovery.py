"""`lpnode signer -remoteDiscovery` as a black box: what `GET /discover-orchestrators` lists, and when it looks again
(research remote-signer.md §9 and the discovery bullet of §14).

Real signer processes on a dev chain (anvil, the project's contracts; the signer is on chain only) poll the
orchestrators an `-orchWebhookUrl` served by this test names. Those orchestrators are stand-ins run here: each
answers `GetOrchestrator` over gRPC and `GET /discovery` on one plain port (lpnode's own same-port server), with
whatever this test puts in them. A real lpnode orchestrator checks its own runner records and prices, so it cannot
advertise the malformed, foreign, duplicated or over-priced records these cases are about.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_signer_payments import SignerProcess

from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.protocol.capabilities import Capability
from lpnode.protocol.grpc_unary import GrpcError, PeerInfo, StatusCode
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.orchestrator_service import orchestrator_methods
from lpnode.protocol.same_port import ServerSettings, new_event_loop, serve_same_port
from paid_nodes import chain_flags, wallet_flags
from procs import GatewayProcess, free_port

LV2V = int(Capability.LIVE_VIDEO_TO_VIDEO)
T2I = int(Capability.TEXT_TO_IMAGE)
A = "live-video-to-video/model-a"
B = "text-to-image/model-b"
GLOBAL_MAX = 150  # the signers' -maxPricePerUnit, wei per unit
CAP_MAX = 100  # their -maxPricePerCapability for live-video-to-video/model-a
CAP_PRICES = {"capabilities_prices": [{"pipeline": "live-video-to-video", "model_id": "model-a",
                                       "price_per_unit": CAP_MAX, "pixels_per_unit": 1}]}  # fmt: skip
INTERVAL = 3.0  # the second signer's -liveAICapReportInterval, seconds
DISCOVERED = "https://discovered.example.com:8935"  # only ever named in /discovery answers, never polled


class StandIns:
    """Stand-in orchestrators on loopback, one plain port each: ``GetOrchestrator`` answers ``infos[name]``
    (UNAVAILABLE when absent), ``GET /discovery`` answers ``discovery[name]`` (404 when absent)."""

    def __init__(self, names: list[str]) -> None:
        self.infos: dict[str, OrchestratorInfo] = {}
        self.discovery: dict[str, Any] = {}
        self.ports = {name: free_port() for name in names}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self._loop = new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        for url in self.urls.values():
            while True:
                try:
                    requests.get(url + "/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline, f"stand-in {url} never listened"
                    time.sleep(0.05)

    async def _serve(self) -> None:
        await asyncio.gather(*(self._one(name, port) for name, port in self.ports.items()))

    async def _one(self, name: str, port: int) -> None:
        async def discovery(request: Request) -> Response:
            if name not in self.discovery:
                return Response(b"404 page not found\n", status_code=404)
            return JSONResponse(self.discovery[name])

        async def get_orchestrator(request: OrchestratorRequest, peer: PeerInfo) -> OrchestratorInfo:
            if name not in self.infos:
                raise GrpcError(StatusCode.UNAVAILABLE, "not serving")
            return self.infos[name]

        app = Starlette(routes=[Route("/discovery", discovery), Route("/healthz", lambda r: Response(b""))])
        settings = ServerSettings("127.0.0.1", port)
        await serve_same_port(app, orchestrator_methods(get_orchestrator), settings, stop=self._stop,
                              handle_signals=False)  # fmt: skip

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)
        self._loop.close()


class OrchestratorList:
    """``-orchWebhookUrl``: ``GET /<name>`` answers ``[{"address": ...}]`` for the addresses in ``lists[name]``."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = json.dumps([{"address": a} for a in outer.lists.get(self.path.strip("/"), [])]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RecordingProxy:
    """Stands between a gateway and a real signer to show what the gateway sends: each request's method, path and
    headers are kept in ``seen``, then it is passed on to ``target`` and the signer's answer returned."""

    def __init__(self, target: str) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path, dict(self.headers.items())))
                answer = requests.request(self.command, target + self.path, data=body, timeout=30,
                                          headers={"Content-Type": self.headers.get("Content-Type", "")})  # fmt: skip
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = relay

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def orchestrator_info(url: str, models: dict[int, list[str]], price: tuple[int, int] | None,
                      model_prices: dict[tuple[int, str], int]) -> OrchestratorInfo:  # fmt: skip
    """What an orchestrator at ``url`` answers: its models, its global price and its per-model prices."""
    info = OrchestratorInfo(transcoder=url, address=bytes.fromhex("11" * 20))
    for cap, names in models.items():
        for model in names:
            info.capabilities.constraints.PerCapability[cap].models[model].warm = True
    if price is not None:
        info.price_info.pricePerUnit, info.price_info.pixelsPerUnit = price
    for (cap, model), amount in model_prices.items():
        info.capabilities_prices.add(pricePerUnit=amount, pixelsPerUnit=1, capability=cap, constraint=model)
    return info


def runner(url: str, app: str = A, price: object = 80, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"url": url, "app": app}
    if price is not None:
        record["price_info"] = {"price": price, "currency": "wei", "unit": "seconds"}
    record.update(extra)
    return record


@dataclass
class Stack:
    chain: DevChain
    orchs: StandIns
    lists: OrchestratorList
    signer: SignerProcess
    """Polls the orchestrators of ``lists["main"]``; the default 25-minute interval."""
    timed: SignerProcess
    """Polls those of ``lists["timed"]`` every ``INTERVAL`` seconds."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("signer-discovery")
    loop = asyncio.new_event_loop()
    chain = loop.run_until_complete(start_devchain())
    orchs = StandIns(["one", "two", "three", "four", "dear", "unpriced"])
    lists = OrchestratorList()
    started: list[SignerProcess] = []
    try:
        wallet = wallet_flags(tmp / "wallet", chain.accounts[2].key)
        common = [*chain_flags(chain), *wallet, "-remoteDiscovery", "-maxPricePerUnit", str(GLOBAL_MAX),
                  "-maxPricePerCapability", json.dumps(CAP_PRICES)]  # fmt: skip
        signer = SignerProcess(tmp / "main", *common, "-orchWebhookUrl", lists.url + "/main")
        started.append(signer)
        timed = SignerProcess(tmp / "timed", *common, "-orchWebhookUrl", lists.url + "/timed",
                              "-liveAICapReportInterval", f"{INTERVAL:g}s")  # fmt: skip
        started.append(timed)
        yield Stack(chain, orchs, lists, signer, timed)
    finally:
        for process in started:
            assert process.stop() == 0, process.log()
        lists.close()
        orchs.close()
        loop.run_until_complete(chain.close())
        loop.close()
    for process in started:  # no key in any log
        assert chain.accounts[2].key.hex() not in process.log().lower()


def discover(signer: SignerProcess, *caps: str) -> requests.Response:
    return requests.get(signer.url + "/discover-orchestrators", params={"caps": list(caps)}, timeout=30)


OK_RUNNER = runner("https://one/apps/ok", capacity=2, capacity_used=1, capacity_available=1, version="1.2",
                   mode="persistent", gpu={"id": "0", "name": "RTX 4090", "vram_mb": 24564},
                   metadata='{"note": "région 1"}', secret_field="must-not-leak")  # fmt: skip


def test_discovery_lists_price_eligible_orchestrators_and_their_valid_runners(stack: Stack) -> None:
    orchs, url = stack.orchs, stack.orchs.urls
    # One: its per-model price (80) is used, not its expensive global price (200).
    orchs.infos["one"] = orchestrator_info(url["one"], {LV2V: ["model-a"]}, (200, 1), {(LV2V, "model-a"): 80})
    orchs.discovery["one"] = [
        {"address": url["one"] + "/", "score": 99, "capabilities": ["evil/app"], "unknown_field": "must-not-leak",
         "runners": [
             OK_RUNNER,
             runner("https://one/apps/model-capped", price=120),  # above the model's maximum: not applied to runners
             runner("https://one/apps/above-global", price=GLOBAL_MAX + 1),
             runner("https://one/apps/no-price", price=None),
             runner("https://one/apps/zero", price=0),
             {**runner("https://one/apps/usd"), "price_info": {"price": 1, "currency": "usd", "unit": "seconds"}},
             {**runner("https://one/apps/hour"), "price_info": {"price": 1, "currency": "wei", "unit": "hour"}},
             {**runner("https://one/apps/fixed", app="demo/fixed"),
              "price_info": {"price": "5", "currency": " WEI ", "unit": "fixed"}},
             {**runner("https://one/apps/txt", app=B), "price_info": {"price": 1, "currency": "wei",
                                                                      "unit": "720p-pixel-seconds"}},
             runner("https://one/apps/long-metadata", metadata="x" * 1025),
             runner("https://one/apps/object-metadata", metadata={"a": 1}),
             runner("https://one/apps/replacement-char", metadata="bad \ufffd"),
             runner("https://one/apps/blank-app", app="   "),
             runner("", app=A),
         ]},
        {"address": DISCOVERED, "runners": [runner(DISCOVERED + "/scope", capacity=3),
                                            runner(DISCOVERED + "/dupe", capacity=1)]},
        {"address": DISCOVERED + "/", "runners": [runner(DISCOVERED + "/dupe", capacity=2, capacity_used=1)]},
        {"address": "://invalid-uri", "runners": [runner("https://x/apps/a")]},
    ]  # fmt: skip
    # Two: one model above its maximum (dropped), one within the global maximum.
    orchs.infos["two"] = orchestrator_info(url["two"], {LV2V: ["model-a"], T2I: ["model-b"]}, (200, 1),
                                           {(LV2V, "model-a"): 120, (T2I, "model-b"): 50})  # fmt: skip
    orchs.discovery["two"] = [{"address": DISCOVERED, "runners": [runner(DISCOVERED + "/from-two")]}]
    # Three: every model too expensive, but listed again for its runner.
    orchs.infos["three"] = orchestrator_info(url["three"], {LV2V: ["model-a"]}, (200, 1), {(LV2V, "model-a"): 200})
    orchs.discovery["three"] = [{"address": url["three"], "runners": [runner(url["three"] + "/apps/a", price=1)]}]
    # Four: no models over gRPC at all, only a Live Runner app.
    orchs.infos["four"] = orchestrator_info(url["four"], {}, (1, 1), {})
    orchs.discovery["four"] = [{"address": url["four"], "runners": [runner(url["four"] + "/r", app="custom-runner-v1",
                                                                           price=5)]}]  # fmt: skip
    stack.lists.lists["main"] = [url["one"], url["two"], url["three"], url["four"], "://invalid-uri"]

    answer = discover(stack.signer)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert "must-not-leak" not in answer.text and "evil/app" not in answer.text
    shown_ok = {k: v for k, v in OK_RUNNER.items() if k != "secret_field"}  # metadata and the rest round-trip
    fixed = {**runner("https://one/apps/fixed", app="demo/fixed"),
             "price_info": {"price": "5", "currency": " WEI ", "unit": "fixed"}}  # fmt: skip
    txt = {**runner("https://one/apps/txt", app=B), "price_info": {"price": 1, "currency": "wei",
                                                                   "unit": "720p-pixel-seconds"}}  # fmt: skip
    assert answer.json() == [
        {"address": url["one"], "score": 1, "capabilities": ["demo/fixed", A, B],
         "runners": [shown_ok, runner("https://one/apps/model-capped", price=120), fixed, txt]},
        {"address": url["two"], "score": 1, "capabilities": [B]},
        {"address": DISCOVERED, "score": 1, "capabilities": [A],
         "runners": [runner(DISCOVERED + "/scope", capacity=3), runner(DISCOVERED + "/dupe", capacity=1),
                     runner(DISCOVERED + "/from-two")]},
        {"address": url["three"], "score": 1, "capabilities": [A],
         "runners": [runner(url["three"] + "/apps/a", price=1)]},
        {"address": url["four"], "score": 1, "capabilities": ["custom-runner-v1"],
         "runners": [runner(url["four"] + "/r", app="custom-runner-v1", price=5)]},
    ]  # fmt: skip
    filtered_log = stack.signer.log()
    assert "Filtered remote discovery runner" in filtered_log and "above global max price" in filtered_log

    # caps: any of them (empty values ignored), each orchestrator once, in the order asked; runners not filtered.
    some = discover(stack.signer, "custom-runner-v1", "", B, "demo/fixed")
    assert some.status_code == 200, some.text
    assert [e["address"] for e in some.json()] == [url["four"], url["one"], url["two"]]
    assert len(some.json()[1]["runners"]) == 4
    assert discover(stack.signer, "nobody/offers-this").json() == []


def test_an_empty_snapshot_is_rebuilt_at_once_and_a_full_one_after_the_interval(stack: Stack) -> None:
    orchs, url = stack.orchs, stack.orchs.urls
    # Nothing eligible: an invalid address, a model above its maximum, an orchestrator with no price.
    orchs.infos["dear"] = orchestrator_info(url["dear"], {LV2V: ["model-a"]}, (200, 1), {})
    orchs.infos["unpriced"] = orchestrator_info(url["unpriced"], {LV2V: ["model-a"]}, None, {})
    orchs.infos.setdefault("four", orchestrator_info(url["four"], {}, (1, 1), {}))
    orchs.discovery["four"] = [{"address": url["four"], "runners": [runner(url["four"] + "/r", app="custom-runner-v1",
                                                                           price=5)]}]  # fmt: skip
    orchs.infos["two"] = orchestrator_info(url["two"], {T2I: ["model-b"]}, (50, 1), {})
    orchs.discovery.pop("two", None)
    stack.lists.lists["timed"] = ["://also-invalid", url["dear"], url["unpriced"]]
    empty = discover(stack.timed)
    assert empty.status_code == 503
    assert empty.headers["content-type"] == "application/json"
    assert empty.json() == {"error": {"message": "Service Unavailable Error"}}

    stack.lists.lists["timed"] = [url["four"]]
    first = discover(stack.timed)  # well within the interval: an empty snapshot is not kept
    built = time.monotonic()
    assert first.status_code == 200, first.text
    assert [e["address"] for e in first.json()] == [url["four"]]

    stack.lists.lists["timed"] = [url["two"]]
    assert [e["address"] for e in discover(stack.timed).json()] == [url["four"]]  # still the snapshot
    time.sleep(max(0.0, built + INTERVAL + 0.3 - time.monotonic()))
    later = discover(stack.timed)
    assert [(e["address"], e["capabilities"]) for e in later.json()] == [(url["two"], [B])]


def test_a_gateway_sends_its_signer_headers_when_it_asks_who_pays_and_whom_to_pay(stack: Stack, tmp_path: Path) -> None:
    proxy = RecordingProxy(stack.signer.url)
    try:
        # No -orchAddr: the gateway discovers through the signer.
        headers = "Authorization: Bearer gateway-token, X-Tenant: t1"
        gateway = GatewayProcess(tmp_path / "gateway", "-remoteSignerUrl", proxy.url, "-remoteSignerHeaders", headers)
        try:
            requests.get(gateway.base_url + "/discovery", timeout=30)
            deadline = time.monotonic() + 20
            while not any(path.startswith("/discover-orchestrators") for _, path, _ in proxy.seen):
                assert time.monotonic() < deadline, proxy.seen
                time.sleep(0.2)
        finally:
            gateway.stop()
    finally:
        proxy.close()
    sign_info = [
        headers for method, path, headers in proxy.seen if (method, path) == ("POST", "/sign-orchestrator-info")
    ]
    assert sign_info, proxy.seen
    assert sign_info[0]["Content-Type"] == "application/json"
    assert (sign_info[0]["Authorization"], sign_info[0]["X-Tenant"]) == ("Bearer gateway-token", "t1")
    discovery = [headers for method, path, headers in proxy.seen if path.startswith("/discover-orchestrators")]
    assert all(h["Authorization"] == "Bearer gateway-token" and h["X-Tenant"] == "t1" for h in discovery)
    assert stack.chain.accounts[2].key.hex() not in gateway.log_path.read_text()
