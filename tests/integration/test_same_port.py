"""gRPC and HTTP on one port, over TLS and plain, with the clients that call a Livepeer orchestrator.

Runs the real server in a child process (`python -m lpnode.protocol.demo_server`) and talks to it with
grpcio (as the livepeer-gateway SDK does), requests (HTTP/1.1) and curl (HTTP/2: ALPN h2 over TLS,
prior knowledge and Upgrade in plain mode).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests

from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from procs import child_env, free_port
from sdk import sdk_python

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"


class DemoServer:
    def __init__(self, log_path: Path, tls_dir: Path | None) -> None:
        self.port = free_port()
        self.tls_dir = tls_dir
        self.scheme = "https" if tls_dir else "http"
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = ["--port", str(self.port), *(["--tls-dir", str(tls_dir)] if tls_dir else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lpnode.protocol.demo_server", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        try:
            self._wait_ready()
        except BaseException:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self._log.close()
            raise

    @property
    def cert(self) -> Path | None:
        return self.tls_dir / "cert.pem" if self.tls_dir else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo server exited with {self.proc.returncode}:\n{self.log()}")
            if self.cert is None or self.cert.exists():
                try:
                    self.get("/healthz", timeout=1)
                    return
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"demo server never answered /healthz:\n{self.log()}")

    def get(self, path: str, timeout: float = 5) -> requests.Response:
        return requests.get(self.base_url + path, timeout=timeout, verify=str(self.cert) if self.cert else True)

    def channel(self) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        if self.cert:
            return grpc.secure_channel(target, grpc.ssl_channel_credentials(self.cert.read_bytes()))
        return grpc.insecure_channel(target)

    def curl(self, path: str, *flags: str) -> subprocess.CompletedProcess[str]:
        tls = ["--cacert", str(self.cert)] if self.cert else []
        cmd = ["curl", "-sS", "--max-time", "5", *tls, *flags, "-w", "\n%{http_version}", self.base_url + path]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
                    raise AssertionError(f"demo server ignored signal {sig} for {timeout} s:\n{self.log()}") from None
        finally:
            self._log.close()
        return self.proc.returncode


def get_orchestrator(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        GET_ORCHESTRATOR,
        request_serializer=OrchestratorRequest.SerializeToString,
        response_deserializer=OrchestratorInfo.FromString,
    )


@pytest.fixture(scope="module", params=["tls", "plain"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    tmp = tmp_path_factory.mktemp(f"same-port-{request.param}")
    demo = DemoServer(tmp / "server.log", tmp / "tls" if request.param == "tls" else None)
    yield demo
    assert demo.stop() == 0, demo.log()


def test_grpc_client_gets_orchestrator_info(server: DemoServer) -> None:
    with server.channel() as channel:
        info = get_orchestrator(channel)(OrchestratorRequest(address=b"\xab" * 20, ignoreCapacityCheck=True), timeout=5)
    assert info.transcoder == server.base_url
    assert info.address == b"\xab" * 20, "the request was decoded"
    assert info.capabilities.bitstring[0] == (1 << 27) | (1 << 33)
    assert dict(info.capabilities.capacities) == {27: 1, 33: 2}
    turbo = info.capabilities.constraints.PerCapability[27].models["stabilityai/sd-turbo"]
    assert turbo.warm and turbo.capacity == 1
    prices = {(p.capability, p.constraint): (p.pricePerUnit, p.pixelsPerUnit) for p in info.capabilities_prices}
    assert prices[(27, "stabilityai/sd-turbo")] == (4768371, 1000)
    assert info.auth_token.session_id and len(info.auth_token.token) == 32
    assert info.auth_token.expiration > time.time() + 29 * 60


def test_grpc_errors_arrive_as_statuses(server: DemoServer) -> None:
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as denied:
            get_orchestrator(channel)(OrchestratorRequest(sig=b"deny"), timeout=5)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "signature check failed" in (denied.value.details() or "")
        unknown = channel.unary_unary("/net.Orchestrator/Ping", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as missing:
            unknown(b"", timeout=5)
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert GET_ORCHESTRATOR in (missing.value.details() or "")
        # The channel is still good after errors.
        assert get_orchestrator(channel)(OrchestratorRequest(), timeout=5).transcoder == server.base_url


def test_one_channel_serves_past_hypercorns_default_request_limit(server: DemoServer) -> None:
    """hypercorn's default keep_alive_max_requests (1000) silently hangs call 1001 on a gRPC channel."""
    with server.channel() as channel:
        call = get_orchestrator(channel)
        for _ in range(1010):
            call(OrchestratorRequest(), timeout=5)


def test_http1_client_gets_healthz(server: DemoServer) -> None:
    response = server.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "http_version": "1.1"}


def test_http2_client_gets_healthz(server: DemoServer) -> None:
    flags = ["--http2"] if server.cert else ["--http2-prior-knowledge"]
    result = server.curl("/healthz", *flags)
    assert result.returncode == 0, result.stderr
    body, version = result.stdout.rsplit("\n", 1)
    assert version == "2"
    assert json.loads(body) == {"status": "ok", "http_version": "2"}


def test_plain_port_also_upgrades_http1_to_h2c(server: DemoServer) -> None:
    if server.cert:
        pytest.skip("Upgrade: h2c only exists on plain connections")
    result = server.curl("/healthz", "--http2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rsplit("\n", 1)[1] == "2"


def test_unknown_http_route_is_a_plain_404(server: DemoServer) -> None:
    assert server.get("/nope").status_code == 404


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_cleanly(tmp_path: Path, sig: int) -> None:
    demo = DemoServer(tmp_path / "server.log", tmp_path / "tls")
    with demo.channel() as channel:
        get_orchestrator(channel)(OrchestratorRequest(), timeout=5)
        started = time.monotonic()
        assert demo.stop(sig) == 0, demo.log()
    assert time.monotonic() - started < 6, "an idle open connection must not hold up shutdown"
    assert "stopped serving" in demo.log()
    assert "Traceback" not in demo.log()


def test_busy_port_is_reported_with_what_to_do(tmp_path: Path) -> None:
    first = DemoServer(tmp_path / "first.log", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lpnode.protocol.demo_server", "--port", str(first.port)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=20,
        )
    finally:
        assert first.stop() == 0
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{first.port}" in result.stderr
    assert "choose another port" in result.stderr


SDK_SCRIPT = """
import sys
from livepeer_gateway import get_orch_info
info = get_orch_info(sys.argv[1])
caps = info.capabilities.constraints.PerCapability[27].models["stabilityai/sd-turbo"]
print(info.transcoder, info.auth_token.session_id != "", caps.warm, caps.capacity, len(info.capabilities_prices))
"""


def test_livepeer_gateway_sdk_gets_orchestrator_info_over_tls(tmp_path: Path) -> None:
    python = sdk_python()
    demo = DemoServer(tmp_path / "server.log", tmp_path / "tls")
    try:
        result = subprocess.run(
            [str(python), "-c", SDK_SCRIPT, demo.base_url], capture_output=True, text=True, timeout=60
        )
    finally:
        assert demo.stop() == 0, demo.log()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [demo.base_url, "True", "True", "1", "2"]
