"""Two ``lpnode gateway`` processes on one PostgreSQL database (a real server the module starts and stops), in
front of one orchestrator, as replicas behind a balancer: keys made with ``lpnode keys --db-url`` work on both, a
revoked key is refused by both within about a second, a key's rate and concurrency limits hold across both, usage
has one row per request whichever gateway served it, an asynchronous job taken by one is answered by the other, and
a runner-app session reserved on one is called and stopped through the other. The database password shows nowhere."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from PIL import Image

from gateway_apps import EchoApp
from gateway_apps import orchestrator as apps_orchestrator
from postgres_server import PostgresServer, postgres_server
from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, run_cli

T2I = "lpnode/tiny-text-to-image"
I2V = "lpnode/tiny-image-to-video"
BODY: dict[str, Any] = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 2}
SLOW = BODY | {"num_inference_steps": 150}  # a few seconds on the tiny model: long enough to hold a slot


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def runner(start_runner) -> RunnerProcess:  # type: ignore[no-untyped-def]
    node: RunnerProcess = start_runner("text-to-image", T2I, "--max-in-flight", "4", "--max-queue", "16")
    node.wait_status({"IDLE"})
    return node


@pytest.fixture(scope="module")
def orchestrator(
    runner: RunnerProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrchestratorProcess]:
    data = tmp_path_factory.mktemp("orch")
    entries = [
        {"pipeline": "text-to-image", "model_id": T2I, "url": runner.base_url, "capacity": 4},
        {"pipeline": "image-to-video", "model_id": I2V, "warm": True},
    ]
    (data / "aiModels.json").write_text(json.dumps(entries))
    node = OrchestratorProcess(data / "aiModels.json", models_dir, data / "data")
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def db_url(postgres: PostgresServer) -> str:
    return postgres.database()


@pytest.fixture
def gateways(orchestrator: OrchestratorProcess, db_url: str, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    try:
        for name in ("gw-a", "gw-b"):
            flags = ("--orch-addr", orchestrator.base_url, "--auth", "keys", "--db-url", db_url)
            started.append(GatewayProcess(tmp_path / name, *flags))
        yield started
    finally:
        for gateway in started:
            gateway.stop()


def lpnode(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_key(db_url: str, name: str, *limits: str) -> str:
    key: str = json.loads(lpnode("keys", "create", name, "--json", "--db-url", db_url, *limits))["key"]
    return key


def post(gateway: GatewayProcess, key: str, body: dict[str, Any] = BODY) -> requests.Response:
    return requests.post(
        gateway.base_url + "/text-to-image", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None


def scalar(db_url: str, sql: str) -> Any:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def test_a_key_works_on_both_and_once_revoked_is_refused_by_both(gateways: list[GatewayProcess], db_url: str) -> None:
    key = create_key(db_url, "alice")
    assert [post(g, key).status_code for g in gateways] == [200, 200]
    assert "alice" in lpnode("keys", "list", "--db-url", db_url)

    revoked = lpnode("keys", "revoke", "alice", "--db-url", db_url)
    assert "refuses it within 1 s" in revoked
    took = wait_until(lambda: all(post(g, key).status_code == 401 for g in gateways), timeout=5, interval=0.1)
    assert took is not None and took < 2.5, "a revoked key must be refused by every gateway within about 1 s"
    refused = post(gateways[1], key)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_a_rate_limit_holds_across_both_gateways(gateways: list[GatewayProcess], db_url: str) -> None:
    key = create_key(db_url, "metered", "--rate-per-minute", "4")
    statuses = [post(gateways[i % 2], key).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]  # 4 a minute in all, not 4 on each gateway
    over = post(gateways[0], key)
    assert over.status_code == 429 and "4 requests per minute" in over.json()["error"]["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 15


def test_a_concurrency_limit_holds_across_both_gateways(gateways: list[GatewayProcess], db_url: str) -> None:
    key = create_key(db_url, "busy", "--max-concurrent", "2")
    slow: list[requests.Response] = []
    workers = [threading.Thread(target=lambda g=g: slow.append(post(g, key, SLOW))) for g in gateways]
    for worker in workers:
        worker.start()
    try:
        held = "SELECT count(*) FROM key_slots"
        assert wait_until(lambda: scalar(db_url, held) == 2, timeout=30) is not None, "two slow requests hold a slot"
        for gateway in gateways:
            refused = post(gateway, key)
            assert refused.status_code == 429, refused.text
            assert "2 requests in progress" in refused.json()["error"]["message"]
            assert refused.headers["Retry-After"] == "1"
    finally:
        for worker in workers:
            worker.join(timeout=120)
    assert [r.status_code for r in slow] == [200, 200]
    assert wait_until(lambda: post(gateways[1], key).status_code == 200, timeout=10, interval=0.1) is not None


def test_usage_has_one_row_per_request_whichever_gateway_served_it(gateways: list[GatewayProcess], db_url: str) -> None:
    key = create_key(db_url, "counted", "--rate-per-minute", "3")
    answers = [post(gateways[i % 2], key) for i in range(5)]  # 3 served, 2 over the rate
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]

    def rows() -> int:
        return int(scalar(db_url, "SELECT count(*) FROM usage WHERE key_name = 'counted'"))

    assert wait_until(lambda: rows() == 5, timeout=15, interval=0.1) is not None
    time.sleep(0.5)
    assert rows() == 5, "no request may be recorded twice"
    assert scalar(db_url, "SELECT count(DISTINCT request_id) FROM usage WHERE key_name = 'counted'") == 5
    summary = {g["key"]: g for g in json.loads(lpnode("usage", "--json", "--since", "1h", "--db-url", db_url))}
    counted = summary["counted"]
    assert (counted["requests"], counted["served"], counted["refused"]) == (5, 3, 2)
    assert "counted" in lpnode("usage", "--by", "key,pipeline", "--db-url", db_url)


def test_an_async_job_taken_by_one_gateway_is_answered_by_the_other(
    gateways: list[GatewayProcess], db_url: str
) -> None:
    key = create_key(db_url, "video")
    image = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 140, 200)).save(image, format="PNG")
    form = {"model_id": I2V, "width": "64", "height": "64", "num_inference_steps": "2"}
    started = requests.post(
        gateways[0].base_url + "/image-to-video", data=form, files={"image": ("in.png", image.getvalue(), "image/png")},
        headers={"Prefer": "respond-async", "Authorization": f"Bearer {key}"}, timeout=30,
    )  # fmt: skip
    assert started.status_code == 202, started.text
    request_id = started.json()["request_id"]
    seen: list[int] = []

    def complete() -> bool:
        poll = requests.post(
            gateways[1].base_url + "/image-to-video/result", json={"request_id": request_id}, timeout=30
        )
        seen.append(poll.status_code)
        assert poll.status_code in (200, 202), poll.text
        return poll.status_code == 200

    assert wait_until(complete, timeout=120, interval=0.2) is not None
    answer = requests.post(gateways[1].base_url + "/image-to-video/result", json={"request_id": request_id}, timeout=30)
    body = answer.json()
    assert body["status"] == "complete" and "error" not in body["result"], body
    assert body["result"]["images"][0]["url"].startswith(gateways[0].base_url + "/stream/")  # the files stay there
    unknown = requests.post(gateways[1].base_url + "/image-to-video/result", json={"request_id": "nope"}, timeout=30)
    assert unknown.status_code == 404


@pytest.fixture(scope="module")
def app_orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    """An orchestrator hosting the echo app as static runners (a persistent one with capacity 1)."""
    echo = EchoApp(tmp_path_factory.mktemp("echo"))
    try:
        node = apps_orchestrator(tmp_path_factory.mktemp("apps-orch"), echo.runners())
        try:
            yield node
        finally:
            node.stop()
    finally:
        echo.stop()


def test_a_session_reserved_on_one_gateway_is_used_and_stopped_through_the_other(
    app_orchestrator: OrchestratorProcess, db_url: str, tmp_path: Path
) -> None:
    key, other = create_key(db_url, "app-dev"), create_key(db_url, "someone-else")
    flags = ("--orch-addr", app_orchestrator.base_url, "--auth", "keys", "--db-url", db_url)
    first, second = (GatewayProcess(tmp_path / name, *flags) for name in ("apps-a", "apps-b"))
    try:
        mine = {"Authorization": f"Bearer {key}"}
        reserved = requests.post(first.base_url + "/apps/echo/session/session", headers=mine, timeout=30)
        assert reserved.status_code == 200, reserved.text
        sid = reserved.json()["session_id"]
        # Its URLs name the gateway that reserved it; the same paths work on the other replica (a balancer's view).
        path = f"/apps/echo/session/session/{sid}"
        called = requests.put(second.base_url + path + "/app/doc", data=b"v", headers=mine, timeout=30)
        assert called.status_code == 200 and called.json()["headers"]["Livepeer-Session-Id"] == sid, called.text
        theirs = requests.get(
            second.base_url + path + "/app/doc", headers={"Authorization": f"Bearer {other}"}, timeout=30
        )
        assert theirs.status_code == 404 and theirs.json()["error"]["message"] == "runner session not found"

        assert requests.post(second.base_url + path + "/stop", headers=mine, timeout=30).status_code == 204
        gone = requests.get(first.base_url + path + "/app/doc", headers=mine, timeout=30)
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "runner session not found"
        again = requests.post(first.base_url + "/apps/echo/session/session", headers=mine, timeout=30)
        assert again.status_code == 200, again.text  # the orchestrator's one slot came back
        assert requests.post(again.json()["control_url"] + "/stop", headers=mine, timeout=30).status_code == 204
        assert scalar(db_url, "SELECT COUNT(*) FROM app_sessions") == 0
    finally:
        first.stop()
        second.stop()
    for gateway in (first, second):
        assert "Traceback" not in gateway.log_path.read_text()


def test_the_password_shows_nowhere(
    gateways: list[GatewayProcess], db_url: str, postgres: PostgresServer, orchestrator: OrchestratorProcess
) -> None:
    status = requests.get(gateways[0].admin_url + "/status", timeout=10)
    assert status.json()["database"] == db_url.replace(postgres.password, "***")
    assert postgres.password not in status.text
    for gateway in gateways:
        assert postgres.password not in gateway.log_path.read_text()
    assert "lpnode:***@" in gateways[0].log_path.read_text()

    wrong = db_url.replace(postgres.password, "not-the-password")
    for args in (
        ("gateway", "--orch-addr", orchestrator.base_url, "--db-url", wrong, "--http-addr", "127.0.0.1:0"),
        ("keys", "list", "--db-url", wrong),
        ("usage", "--db-url", f"postgresql://lpnode:{postgres.password}@127.0.0.1:1/none"),
        ("keys", "create", "x", "--db-url", "postgresql://lpnode:secret@host:port/db"),
    ):
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("lpnode: error: "), done.stderr
        assert "not-the-password" not in done.stderr and postgres.password not in done.stderr
        assert "secret" not in done.stderr
