"""The admin APIs as an operator and a hostile web page meet them: the gateway's (`--cli-addr`) and the
orchestrator's (`--cli-addr`, the whole node view). A cross-site form POST and a DNS-rebinding Host are refused,
the `lpnode` commands and curl are served, and with an admin token set nothing is served without it.
The orchestrator's public `/status` keeps runner PIDs, log paths and URLs to its admin API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from procs import GatewayProcess, OrchestratorProcess, child_env, run_cli
from up_stack import Stack

PRICE_FORM = {
    "maxPricePerUnit": "1",
    "pixelsPerUnit": "1",
    "currency": "wei",
    "pipeline": "text-to-image",
    "modelID": "default",
}
TOKEN = "admin-s3cret"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    node = GatewayProcess(tmp_path_factory.mktemp("gateway"), "--orch-addr", "127.0.0.1:9")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def guarded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    node = GatewayProcess(tmp_path_factory.mktemp("guarded"), "--orch-addr", "127.0.0.1:9", "--admin-token", TOKEN)
    try:
        yield node
    finally:
        node.stop()


def test_a_cross_site_form_post_cannot_change_a_price_cap(gateway: GatewayProcess) -> None:
    url = f"{gateway.admin_url}/setMaxPriceForCapability"
    refused = requests.post(url, data=PRICE_FORM, headers={"Origin": "http://evil.example"}, timeout=10)
    assert refused.status_code == 403 and "cross-site POST refused" in refused.text
    served = requests.post(url, data=PRICE_FORM, timeout=10)  # curl, or a script: no Origin
    assert served.status_code == 200, served.text
    assert served.text == "max price for text-to-image default set to 1 wei per unit\n"


def test_a_rebinding_host_cannot_read_usage(gateway: GatewayProcess) -> None:
    port = gateway.admin_url.rsplit(":", 1)[1]
    foreign = requests.get(f"{gateway.admin_url}/usage", headers={"Host": f"rebind.evil.example:{port}"}, timeout=10)
    assert foreign.status_code == 403
    assert requests.get(f"{gateway.admin_url}/usage", timeout=10).status_code == 200
    assert requests.get(f"http://localhost:{port}/usage", timeout=10).status_code == 200


def test_with_a_token_every_admin_request_needs_it(guarded_gateway: GatewayProcess) -> None:
    admin = guarded_gateway.admin_url
    for path in ("/usage", "/getNetworkCapabilities", "/status", "/metrics", "/dashboard/usage"):
        assert requests.get(admin + path, timeout=10).status_code == 401, path
        assert requests.get(admin + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).ok, path
    assert requests.get(admin + "/usage", auth=("admin", TOKEN), timeout=10).status_code == 200  # a browser
    # The public API does not ask for it.
    assert requests.get(f"{guarded_gateway.base_url}/healthz", timeout=10).status_code == 200


def test_the_cli_sends_the_token_it_is_given(guarded_gateway: GatewayProcess, tmp_path: Path) -> None:
    admin = guarded_gateway.admin_url
    without = run_cli("status", "--gateway", admin, timeout=60)
    assert without.returncode == 1 and "answered 401" in without.stdout
    (tmp_path / "token").write_text(TOKEN + "\n")
    with_file = run_cli("status", "--gateway", admin, "--admin-token", str(tmp_path / "token"), timeout=60)
    assert with_file.returncode == 0, with_file.stdout
    from_env = run_cli("status", "--gateway", admin, env=child_env(LPNODE_ADMIN_TOKEN=TOKEN), timeout=60)
    assert from_env.returncode == 0, from_env.stdout


def test_the_orchestrator_admin_api_is_guarded_the_same_way(models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "aiModels.json").write_text(json.dumps([]))
    node = OrchestratorProcess(
        tmp_path / "aiModels.json", models_dir, tmp_path / "data", "--orch-secret", "orch",
        env=child_env(LPNODE_ADMIN_TOKEN=TOKEN),
    )  # fmt: skip
    try:
        node.wait_ready()
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert node.admin_get("/status").status_code == 401
        status = node.admin_get("/status", headers=bearer)
        assert status.status_code == 200 and status.json()["service_url"] == node.base_url
        foreign = node.admin_get("/status", headers={**bearer, "Host": f"evil.example:{node.admin_port}"})
        assert foreign.status_code == 403
        assert node.get("/status").status_code == 200  # the public view needs no token
    finally:
        assert node.stop() == 0, node.log()


def test_public_status_leaves_out_pids_log_paths_and_urls(stack: Stack) -> None:
    cert = stack.data_dir / "orchestrator" / "tls" / "cert.pem"
    public = requests.get(f"{stack.orch_url}/status", verify=str(cert), timeout=10).json()
    admin = requests.get(f"{stack.orch_admin_url}/status", timeout=10).json()
    public_runners = [r for m in public["models"] for r in m["runners"]]
    admin_runners = [r for m in admin["models"] for r in m["runners"]]
    assert public_runners and len(public_runners) == len(admin_runners)
    assert not any({"pid", "log_path", "url"} & r.keys() for r in public_runners)
    assert all(r["pid"] and r["log_path"] and r["url"] for r in admin_runners)
    assert [r["name"] for r in public_runners] == [r["name"] for r in admin_runners]

    shown = run_cli("status", "--orchestrator", stack.orch_admin_url, timeout=60)
    assert shown.returncode == 0 and "PID" in shown.stdout and str(admin_runners[0]["pid"]) in shown.stdout
    public_table = run_cli("status", "--orchestrator", stack.orch_url, timeout=60)
    assert public_table.returncode == 0 and "PID" not in public_table.stdout
