"""Hostile input at every port of a real network (gateway, its admin API, orchestrator, runner): oversize
bodies and heads, slowloris connections, path traversal on ``/stream/...`` and trickle channel names, and
hostile model ids shown on every page. Each is refused with a 4xx (the limits in docs/protocol.md
"Connection limits" and docs/gateway.md), never a 5xx, never anything outside the data dir, never raw markup,
and no process logs a traceback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from nodes import BODY, SECRET, logs_with_tracebacks

from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, wait_gone
from up_stack import pids_under

HEAD_TIMEOUT = 10.0  # docs/protocol.md: the time a client has to send a whole request head
SENTINEL = "lpnode-reliability-sentinel-8d1f"


@dataclass
class Network:
    gateway: GatewayProcess
    orchestrator: OrchestratorProcess
    runner: RunnerProcess
    root: Path

    def ports(self) -> dict[str, tuple[int, bool]]:
        """Every HTTP port: name -> (port, TLS)."""
        return {
            "gateway": (self.gateway.port, False),
            "gateway admin": (self.gateway.cli_port, False),
            "orchestrator": (self.orchestrator.port, True),
            "orchestrator admin": (self.orchestrator.admin_port, False),
            "runner": (self.runner.port, False),
        }


@pytest.fixture(scope="module")
def network(
    shared_runner: RunnerProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("hostile")
    # A file next to each data dir that no request may read.
    (root / "secret.txt").write_text(SENTINEL)
    entry = {"pipeline": "text-to-image", "model_id": BODY["model_id"], "url": shared_runner.base_url, "capacity": 2}
    (root / "aiModels.json").write_text(json.dumps([entry]))
    orchestrator = OrchestratorProcess(root / "aiModels.json", models_dir, root / "orch", "--orch-secret", SECRET)
    gateway = None
    try:
        orchestrator.wait_ready()
        (root / "orch" / "secret.txt").write_text(SENTINEL)
        gateway = GatewayProcess(root / "gw", "--orch-addr", orchestrator.base_url)
        (root / "gw" / "secret.txt").write_text(SENTINEL)
        yield Network(gateway, orchestrator, shared_runner, root)
    finally:
        watched = [orchestrator.proc.pid, *pids_under(orchestrator.proc.pid)]
        if gateway is not None:
            watched.append(gateway.proc.pid)
            gateway.stop()
        orchestrator.stop()
        assert wait_gone(watched) == []


def connect(port: int, tls: bool, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
        sock = context.wrap_socket(sock)
    return sock


def raw_status(port: int, tls: bool, request: bytes) -> int:
    """Send ``request`` as is; the status of the answer (0 if the connection closed without one)."""
    with connect(port, tls) as sock:
        with contextlib.suppress(OSError):  # refused mid-send: the answer may still be there to read
            sock.sendall(request)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0


def get_raw_path(
    port: int, tls: bool, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """``path`` sent exactly as written (no client-side normalising of ``..``)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read(1 << 20).decode(errors="replace")
    finally:
        conn.close()


def peak_rss_mib(pid: int) -> float:
    """The most memory ``pid`` has held so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def healthz_ms(network: Network) -> float:
    """The median of five ``/healthz`` round trips at the gateway, in ms."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        assert requests.get(network.gateway.base_url + "/healthz", timeout=5).status_code == 200
        times.append((time.monotonic() - started) * 1000)
    return sorted(times)[2]


def test_oversize_bodies_get_413_without_being_held(network: Network) -> None:
    url = network.gateway.base_url + "/text-to-image"
    peak_before = peak_rss_mib(network.gateway.proc.pid)
    port, tls = network.ports()["gateway"]
    head = b"POST /text-to-image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    assert raw_status(port, tls, head + b"Content-Length: %d\r\n\r\n{" % (200 << 20)) == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, 150 MiB of JSON-ish bytes
        yield b'{"prompt":"'
        block = b"a" * (1 << 20)
        for _ in range(150):
            yield block

    try:
        chunked = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
        status = chunked.status_code
    except requests.ConnectionError:
        status = 413  # the gateway answered and closed the connection while the client was still sending
    assert status == 413
    # 150 MiB were sent; what the gateway held of them is bounded (spooled, not read whole into memory).
    assert peak_rss_mib(network.gateway.proc.pid) - peak_before < 64
    assert requests.post(url, json=BODY, timeout=60).status_code == 200


def test_oversize_request_heads_get_431_at_every_port(network: Network) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    many = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    many += b"\r\n"
    seen = {}
    for name, (port, tls) in network.ports().items():
        seen[name] = (raw_status(port, tls, big), raw_status(port, tls, many))
    assert seen == {name: (431, 431) for name in seen}, seen


def test_slowloris_connections_do_not_slow_health_and_are_dropped(network: Network) -> None:
    held: list[tuple[str, socket.socket]] = []
    try:
        for name, (port, tls) in network.ports().items():
            for _ in range(20):
                sock = connect(port, tls)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                held.append((name, sock))
        assert healthz_ms(network) < 100
        opened = time.monotonic()
        for _, sock in held:  # a byte now and then does not extend the head's deadline
            sock.sendall(b"a")
        time.sleep(HEAD_TIMEOUT / 2)
        for _, sock in held:
            with contextlib.suppress(OSError):
                sock.sendall(b"a")
        assert healthz_ms(network) < 100
        open_after: dict[str, int] = {}
        for name, sock in held:
            sock.settimeout(max(0.1, HEAD_TIMEOUT + 5 - (time.monotonic() - opened)))
            try:
                while sock.recv(4096):
                    pass
            except TimeoutError:
                open_after[name] = open_after.get(name, 0) + 1
            except OSError:
                pass
        assert open_after == {}, f"slow connections still open {HEAD_TIMEOUT + 5:g}s after they began: {open_after}"
    finally:
        for _, sock in held:
            sock.close()


TRAVERSALS = [
    "/stream/../secret.txt",
    "/stream/..%2fsecret.txt",
    "/stream/%2e%2e/secret.txt",
    "/stream/x/../../secret.txt",
    "/stream/x/..%2f..%2fsecret.txt",
    "/stream/%2e%2e%2f%2e%2e%2fsecret.txt/a.png",
    "/stream/..%5c..%5csecret.txt",
    "/stream/x/%00../secret.txt",
    "/stream/" + "..%2f" * 20 + "etc%2fpasswd",
]


def test_path_traversal_on_stream_urls_reaches_nothing(network: Network) -> None:
    for name in ("gateway", "orchestrator"):
        port, tls = network.ports()[name]
        for path in TRAVERSALS:
            status, text = get_raw_path(port, tls, path)
            assert 400 <= status < 500, (name, path, status, text[:200])
            assert SENTINEL not in text and "root:x:" not in text, (name, path)


TRICKLE_NAMES = ["..", "..%2f..%2fstatus", "%2e%2e", "a%2f..%2f..%2fhealthz", "<script>alert(1)</script>", "x" * 10_000]


def test_path_traversal_on_trickle_channel_names_reaches_nothing(network: Network) -> None:
    port, tls = network.ports()["orchestrator"]
    for channel in TRICKLE_NAMES:
        for method, headers in (
            ("POST", {"Authorization": SECRET}),
            ("GET", {}),
            ("DELETE", {"Authorization": SECRET}),
        ):
            status, text = get_raw_path(port, tls, f"/ai/trickle/{channel}", method, headers)
            assert status < 500, (channel, method, status, text[:200])
            assert SENTINEL not in text and "service_url" not in text, (channel, method, text[:200])
        status, text = get_raw_path(port, tls, f"/ai/trickle/{channel}/0")
        assert status < 500, (channel, status, text[:200])
    assert get_raw_path(port, tls, "/healthz")[0] == 200


HOSTILE_IDS = [
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "m" * 10_240,
    "a\u0000b\u202eb",
]


def test_hostile_model_ids_are_refused_and_shown_escaped_on_every_page(network: Network) -> None:
    gateway = network.gateway
    for model_id in HOSTILE_IDS:
        answer = requests.post(gateway.base_url + "/text-to-image", json=BODY | {"model_id": model_id}, timeout=60)
        assert 400 <= answer.status_code < 500 or answer.status_code == 503, (answer.status_code, answer.text[:300])
        assert answer.json()["error"]["message"], answer.text[:300]
        streamed = requests.get(gateway.base_url + f"/stream/{urllib.parse.quote(model_id)}/x.png", timeout=30)
        assert 400 <= streamed.status_code < 500
    pages = [gateway.base_url + p for p in ("/dashboard", "/dashboard/data.json", "/metrics", "/v1/models")]
    pages += [
        gateway.admin_url + p
        for p in ("/status", "/usage", "/getNetworkCapabilities", "/getAISessionPoolsInfo", "/metrics", "/dashboard")
    ]
    pages += [gateway.admin_url + p for p in ("/dashboard/data.json", "/dashboard/usage", "/dashboard/usage.json")]
    pages += [network.orchestrator.admin_url + p for p in ("/status", "/metrics", "/dashboard", "/dashboard/data.json")]
    for page in pages:
        answer = requests.get(page, timeout=30, params={"model": HOSTILE_IDS[1], "since": HOSTILE_IDS[0]})
        assert answer.status_code < 500, (page, answer.status_code, answer.text[:300])
        if answer.headers.get("content-type", "").startswith("application/json"):
            json.loads(answer.text)  # whatever it holds, it is valid JSON
        if answer.headers.get("content-type", "").startswith("text/html"):
            assert "<script>alert(1)" not in answer.text and "<img src=x" not in answer.text, page
    assert logs_with_tracebacks([network.root]) == {}
