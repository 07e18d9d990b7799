"""BYOC end to end on loopback: a container built with the BYOC kit (``lpnode byoc serve``), registered with
two orchestrators that serve no local models (so no runners start), called through a gateway, directly,
and with the livepeer-gateway SDK.

What a user sees is asserted: registration and its refusal, what the orchestrators advertise
(``capabilities_prices``, ``/status``, the gateway's ``/getNetworkCapabilities``), the answer and its
headers, per-second charges in ``Livepeer-Balance``, include/exclude, the capacity bound, an unhealthy
container withdrawn and restored, and server-sent events relayed with the balance event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lpnode.gateway.orch_client import OrchestratorClient
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo
from procs import LPNODE, ChildProcess, GatewayProcess, OrchestratorProcess, child_env, free_port, run_cli
from sdk import sdk_python

SECRET = "byoc-test-secret"
CONTAINER = """
import os, pathlib, time
from starlette.responses import JSONResponse
from lpnode.byoc.kit import ByocApp

FLAG = os.environ.get("BYOC_READY_FILE", "")

def load():
    # The test decides when loading ends (health is 503 until then).
    for _ in range(600):
        if not FLAG or pathlib.Path(FLAG).exists():
            return "loaded"
        time.sleep(0.1)
    raise RuntimeError("never told to finish loading")

app = ByocApp("echo", load=load)

@app.job()
def echo(inputs):
    return {"echo": inputs, "loaded": app.loaded}

@app.job("sleep")
def sleep(inputs):
    time.sleep(float(inputs.get("seconds", 0)))
    return {"slept": inputs.get("seconds", 0)}

@app.job("meta")
def meta(inputs):
    return JSONResponse({"ok": True}, headers={"X-Metadata": '{"frames": 3}'})

@app.job("stream")
def stream(inputs):
    for i in range(int(inputs.get("n", 3))):
        yield {"token": i}
"""


class ContainerProcess(ChildProcess):
    """The kit container above, served by ``lpnode byoc serve container:app``."""

    def __init__(self, directory: Path, port: int | None = None, ready_file: Path | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "container.py").write_text(textwrap.dedent(CONTAINER))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"container-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = child_env(BYOC_READY_FILE=str(ready_file or ""))
        self.proc = subprocess.Popen(
            [*LPNODE, "byoc", "serve", "container:app", "--port", str(self.port)],
            cwd=directory, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                requests.get(self.url + "/health", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(self.log_path.read_text())


def job_header(capability: str, timeout: int = 30, **extra: Any) -> str:
    body = {"id": "", "request": "{}", "parameters": "", "capability": capability, "timeout_seconds": timeout}
    return base64.b64encode(json.dumps(body | extra).encode()).decode()


def register(orch: OrchestratorProcess, name: str, url: str, secret: str = SECRET, **fields: Any) -> requests.Response:
    body = {"name": name, "url": url, "capacity": 4, "price_per_unit": 0, "price_scaling": 1, "currency": "wei"}
    return orch.post("/capability/register", data=json.dumps(body | fields), headers={"Authorization": secret})


def byoc_status(orch: OrchestratorProcess, name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = orch.get("/status").json()["byoc"]
    return next((e for e in entries if e["name"] == name), {})


def advertised(orch: OrchestratorProcess) -> dict[str, tuple[int, int]]:
    """BYOC entries of the orchestrator's ``GetOrchestrator`` answer: name -> (pricePerUnit, pixelsPerUnit)."""

    async def fetch() -> OrchestratorInfo:
        client = OrchestratorClient()
        try:
            return await client.get_info(orch.base_url)
        finally:
            await client.close()

    info = asyncio.run(fetch())
    return {p.constraint: (p.pricePerUnit, p.pixelsPerUnit) for p in info.capabilities_prices if p.capability == 37}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


def start_orchestrator(directory: Path) -> OrchestratorProcess:
    directory.mkdir(parents=True)
    (directory / "aiModels.json").write_text("[]")
    node = OrchestratorProcess(
        directory / "aiModels.json", directory / "models", directory / "data", "--orch-secret", SECRET
    )
    node.wait_ready()
    return node


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("byoc")


@pytest.fixture(scope="module")
def container(workdir: Path) -> Iterator[ContainerProcess]:
    node = ContainerProcess(workdir / "container")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def orchestrators(workdir: Path, container: ContainerProcess) -> Iterator[tuple[OrchestratorProcess, ...]]:
    nodes: list[OrchestratorProcess] = []
    try:
        for name in ("a", "b"):
            node = start_orchestrator(workdir / name)
            nodes.append(node)
            assert register(node, "echo", container.url).text == "ok"
        yield tuple(nodes)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def gateway(workdir: Path, orchestrators: tuple[OrchestratorProcess, ...]) -> Iterator[GatewayProcess]:
    node = GatewayProcess(workdir / "gateway", "--orch-addr", ",".join(o.base_url for o in orchestrators))
    yield node
    node.stop()


def call_gateway(gateway: GatewayProcess, path: str, header: str, body: Any = None, **kw: Any) -> requests.Response:
    return requests.post(
        f"{gateway.base_url}/process/request/{path}", json=body or {}, headers={"Livepeer": header}, timeout=60, **kw
    )


# --- registration ---------------------------------------------------------------------------------------


def test_a_wrong_or_missing_secret_is_refused(orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    orch = orchestrators[0]
    wrong = register(orch, "other", "http://127.0.0.1:1", secret="nope")
    assert (wrong.status_code, wrong.text.strip()) == (400, "invalid authorization")
    missing = orch.post("/capability/register", data=json.dumps({"name": "other", "url": "http://127.0.0.1:1"}))
    assert missing.status_code == 400
    bad = register(orch, "other", "not a url")
    assert bad.status_code == 400 and "url must be" in bad.text
    assert byoc_status(orch, "other") == {}


def test_a_registered_container_is_advertised(orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    orch = orchestrators[0]
    entry = byoc_status(orch, "echo")
    assert entry["healthy"] is True and entry["capacity"] == 4 and entry["in_use"] == 0
    assert {k: entry[k] for k in ("price_per_unit", "price_scaling", "currency")} == {
        "price_per_unit": 0, "price_scaling": 1, "currency": "wei"
    }  # fmt: skip
    assert advertised(orch)["echo"] == (0, 1)


def test_the_gateway_shows_byoc_in_network_capabilities(gateway: GatewayProcess) -> None:
    caps = requests.get(gateway.admin_url + "/getNetworkCapabilities", timeout=10).json()
    assert caps["capabilities_names"]["37"] == "byoc"
    for orch in caps["orchestrators"]:
        assert {"pixelsPerUnit": 1, "capability": 37, "constraint": "echo"} in orch["capabilities_prices"]


# --- jobs -----------------------------------------------------------------------------------------------


def test_a_job_through_the_gateway(gateway: GatewayProcess, orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    answer = call_gateway(gateway, "echo", job_header("echo"), {"text": "hello"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"echo": {"text": "hello"}, "loaded": "loaded"}
    assert answer.headers["X-Orchestrator-Url"] in {o.base_url for o in orchestrators}
    assert answer.headers["Livepeer-Balance"] == "0"  # a free capability costs nothing
    meta = call_gateway(gateway, "meta", job_header("echo"))
    assert meta.headers["X-Metadata"] == '{"frames": 3}'

    def metered() -> bool:
        rows = requests.get(gateway.admin_url + "/usage?by=pipeline", timeout=10).json()["rows"]
        echo = [r for r in rows if r["pipeline"] == "echo"]
        return bool(echo) and echo[0]["requests"] >= 2 and echo[0]["units"] >= 2

    wait_for("the gateway's usage log holds the jobs, by capability name", metered)


def test_include_and_exclude_pick_the_orchestrator(
    gateway: GatewayProcess, orchestrators: tuple[OrchestratorProcess, ...]
) -> None:
    a, b = orchestrators
    for wanted, other in ((a, b), (b, a)):
        for parameters in ({"include": [wanted.base_url]}, {"exclude": [other.base_url]}):
            header = job_header("echo", parameters=json.dumps({"orchestrators": parameters}))
            answers = [call_gateway(gateway, "echo", header) for _ in range(3)]
            assert {r.headers.get("X-Orchestrator-Url") for r in answers} == {wanted.base_url}
    nobody = call_gateway(gateway, "echo", job_header("echo", parameters='{"orchestrators":{"include":["x:1"]}}'))
    assert nobody.status_code == 503 and "parameters.orchestrators" in nobody.json()["error"]["message"]


def test_an_unknown_capability_is_a_clear_503(gateway: GatewayProcess) -> None:
    answer = call_gateway(gateway, "x", job_header("nobody-has-this"))
    assert answer.status_code == 503
    assert "no orchestrator could serve capability nobody-has-this" in answer.json()["error"]["message"]


def test_bad_livepeer_headers_are_400(gateway: GatewayProcess, orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    no_timeout = base64.b64encode(b'{"capability":"echo","request":"{}"}').decode()
    for header, words in (
        ("%%%", "not valid base64"),
        (base64.b64encode(b"not json").decode(), "does not hold JSON"),
        (no_timeout, "timeout_seconds"),
    ):
        answer = call_gateway(gateway, "echo", header)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], answer.text
        direct = orchestrators[0].post("/process/request/echo", data=b"{}", headers={"Livepeer": header})
        assert direct.status_code == 400 and words in direct.text


def test_events_stream_through_with_the_balance_event(gateway: GatewayProcess) -> None:
    with call_gateway(gateway, "stream", job_header("echo"), {"n": 3}, stream=True) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines(decode_unicode=True) if line]
    assert lines == [
        'data: {"token": 0}', 'data: {"token": 1}', 'data: {"token": 2}', 'data: {"balance": 0.000}', "data: [DONE]"
    ]  # fmt: skip


def test_jobs_are_charged_per_whole_second(orchestrators: tuple[OrchestratorProcess, ...], container: Any) -> None:
    orch = orchestrators[0]
    assert register(orch, "paid", container.url, price_per_unit=3000, price_scaling=2).text == "ok"  # 1500 wei/s
    assert advertised(orch)["paid"] == (1500, 1)
    balances = []
    for _ in range(2):
        answer = orch.post(
            "/process/request/sleep", json={"seconds": 1.2}, headers={"Livepeer": job_header("paid")}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        balances.append(int(answer.headers["Livepeer-Balance"]))
    # Each job took a little over 1.2 s, so at least 2 whole seconds are charged, in steps of 1500 wei.
    assert balances[0] <= -3000 and balances[0] % 1500 == 0
    assert balances[1] - balances[0] <= -3000 and balances[1] % 1500 == 0
    token = orch.get("/process/token", headers={"Livepeer-Capability": "paid"}).json()
    assert token["balance"] == balances[1]
    assert token["price"] == {"pricePerUnit": 1500, "pixelsPerUnit": 1}
    assert token["available_capacity"] == 4 and token["service_addr"] == orch.base_url


def test_capacity_is_an_upper_bound(
    gateway: GatewayProcess, orchestrators: tuple[OrchestratorProcess, ...], container: ContainerProcess
) -> None:
    orch = orchestrators[0]
    assert register(orch, "single", container.url, capacity=1).text == "ok"
    slow: list[requests.Response] = []
    worker = threading.Thread(
        target=lambda: slow.append(
            orch.post("/process/request/sleep", json={"seconds": 3}, headers={"Livepeer": job_header("single")})
        )
    )
    worker.start()
    try:
        wait_for("the slow job holds the only slot", lambda: byoc_status(orch, "single")["in_use"] == 1)
        refused = orch.post("/process/request/echo", json={}, headers={"Livepeer": job_header("single")})
        assert refused.status_code == 503 and "No capacity available" in refused.text
        assert refused.headers["Retry-After"] == "1"
        token = orch.get("/process/token", headers={"Livepeer-Capability": "single"}).json()
        assert "available_capacity" not in token  # 0, left out as Go's omitempty does
        header = job_header("single", parameters=json.dumps({"orchestrators": {"include": [orch.base_url]}}))
        through = call_gateway(gateway, "echo", header)
        assert through.status_code == 503 and "no free capacity" in through.json()["error"]["message"]
    finally:
        worker.join(timeout=30)
    assert slow[0].status_code == 200


def test_an_unhealthy_container_is_withdrawn_and_restored(
    orchestrators: tuple[OrchestratorProcess, ...], workdir: Path
) -> None:
    orch = orchestrators[0]
    ready = workdir / "flaky-ready"
    flaky = ContainerProcess(workdir / "flaky", ready_file=ready)
    try:
        assert register(orch, "flaky", flaky.url).text == "ok"
        entry = byoc_status(orch, "flaky")
        assert entry["healthy"] is False and "503" in entry["last_error"]  # still loading
        assert "flaky" not in advertised(orch)
        refused = orch.post("/process/request/echo", json={}, headers={"Livepeer": job_header("flaky")})
        assert refused.status_code == 503
        ready.touch()
        wait_for("the loaded container is healthy", lambda: byoc_status(orch, "flaky")["healthy"])
        assert "flaky" in advertised(orch)
        port = flaky.port
        flaky.stop()  # now it refuses connections
        wait_for("the stopped container is withdrawn", lambda: not byoc_status(orch, "flaky")["healthy"])
        assert "flaky" not in advertised(orch)
        flaky = ContainerProcess(workdir / "flaky", port=port, ready_file=ready)
        wait_for("the restarted container is back", lambda: byoc_status(orch, "flaky")["healthy"])
        answer = orch.post("/process/request/echo", json={"a": 1}, headers={"Livepeer": job_header("flaky")})
        assert answer.json()["echo"] == {"a": 1}
    finally:
        flaky.stop()


def test_a_job_past_its_timeout_is_cut_off(orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    orch = orchestrators[0]
    late = orch.post("/process/request/sleep", json={"seconds": 3}, headers={"Livepeer": job_header("echo", 1)})
    assert late.status_code == 504 and "within 1s" in late.text


def test_a_signed_job_is_checked(orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from lpnode.byoc.job_request import JobRequest, signed_message

    account = Account.create()
    job = JobRequest(capability="echo", timeout_seconds=30, request='{"x":1}', parameters="{}")
    sig = Account.sign_message(encode_defunct(primitive=signed_message(job)), account.key).signature.hex()
    orch = orchestrators[0]
    good = job.encode(sender=account.address, sig="0x" + sig.removeprefix("0x"))
    assert orch.post("/process/request/echo", json={}, headers={"Livepeer": good}).status_code == 200
    forged = job.encode(sender=Account.create().address, sig="0x" + sig.removeprefix("0x"))
    refused = orch.post("/process/request/echo", json={}, headers={"Livepeer": forged})
    assert refused.status_code == 400 and "Could not verify job creds" in refused.text


def test_the_byoc_command_registers_lists_and_unregisters(
    orchestrators: tuple[OrchestratorProcess, ...], container: ContainerProcess
) -> None:
    orch = orchestrators[1]
    added = run_cli(
        "byoc", "register", "--orchestrator", orch.base_url, "--secret", SECRET, "--name", "cli-echo",
        "--url", container.url, "--capacity", "2", "--price-per-unit", "7",
    )  # fmt: skip
    assert added.returncode == 0 and "healthy" in added.stdout, added.stderr
    listed = run_cli("byoc", "list", "--orchestrator", orch.base_url, "--admin-url", orch.admin_url)
    assert listed.returncode == 0
    assert any(line.split()[:4] == ["cli-echo", container.url, "0/2", "7/1"] for line in listed.stdout.splitlines())
    refused = run_cli("byoc", "unregister", "--orchestrator", orch.base_url, "--secret", "x", "--name", "cli-echo")
    assert refused.returncode == 2 and "invalid authorization" in refused.stderr
    removed = run_cli("byoc", "unregister", "--orchestrator", orch.base_url, "--secret", SECRET, "--name", "cli-echo")
    assert removed.returncode == 0 and byoc_status(orch, "cli-echo") == {}


def test_the_livepeer_gateway_sdk_runs_a_byoc_job(orchestrators: tuple[OrchestratorProcess, ...]) -> None:
    python = sdk_python()
    script = textwrap.dedent(
        """
        import json, sys
        from livepeer_gateway.byoc import ByocJobRequest, submit_byoc_job
        result = submit_byoc_job(
            ByocJobRequest(capability="echo", payload={"prompt": "a cat"}, timeout_seconds=30), orch_url=sys.argv[1]
        )
        print(json.dumps({"data": result.data, "balance": result.balance, "url": result.orchestrator_url}))
        """
    )
    orch = orchestrators[0]
    done = subprocess.run([str(python), "-c", script, orch.base_url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The SDK posts to /process/request/<capability>, so the container gets POST /echo.
    assert result["data"] == {"echo": {"prompt": "a cat"}, "loaded": "loaded"}
    assert result["balance"] == "0"
