"""The admin API's guard: foreign Host and cross-site changes refused (403), the admin token required when set
(401), and what the CLI sends (no Origin, loopback Host) served; the public node view without admin fields;
`lpnode up`'s restart backoff."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from lpnode.child_supervisor import RestartBackoff, exit_reason
from lpnode.errors import ConfigError
from lpnode.orchestrator.dashboard_source import public_status
from lpnode.protocol.admin_access import AdminAccess, AdminGuard, admin_headers, read_admin_token

PORT = 5935


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


def client(host: str = "127.0.0.1", token: str = "") -> TestClient:
    app = Starlette(routes=[Route("/usage", ok), Route("/setMaxPriceForCapability", ok, methods=["POST"])])
    return TestClient(AdminGuard(app, AdminAccess(host, PORT, token)), base_url=f"http://127.0.0.1:{PORT}")


@pytest.mark.parametrize("host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}", f"LOCALHOST:{PORT}"])
def test_loopback_hosts_with_the_port_are_served(host: str) -> None:
    assert client().get("/usage", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", [f"evil.example:{PORT}", "127.0.0.1:80", "127.0.0.1", "", f"10.0.0.5:{PORT}"])
def test_a_foreign_host_is_refused(host: str) -> None:
    answer = client().get("/usage", headers={"Host": host})
    assert answer.status_code == 403
    assert "is not this admin API's address" in answer.text


def test_on_every_interface_an_ip_address_is_served_but_a_name_is_not() -> None:
    wildcard = client(host="0.0.0.0")
    assert wildcard.get("/usage", headers={"Host": f"10.0.0.5:{PORT}"}).status_code == 200
    assert wildcard.get("/usage", headers={"Host": f"rebind.evil.example:{PORT}"}).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://evil.example:{PORT}"},
        {"Referer": "https://evil.example/page.html"},
    ],
)
def test_a_cross_site_post_is_refused(headers: dict[str, str]) -> None:
    answer = client().post("/setMaxPriceForCapability", data={"maxPricePerUnit": "1"}, headers=headers)
    assert answer.status_code == 403
    assert "cross-site POST refused" in answer.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": f"http://127.0.0.1:{PORT}"}, {"Referer": f"http://localhost:{PORT}/dashboard/usage"}],
)
def test_a_post_from_the_cli_or_the_admin_pages_is_served(headers: dict[str, str]) -> None:
    assert client().post("/setMaxPriceForCapability", headers=headers).status_code == 200


def test_the_token_is_required_on_every_request_when_set() -> None:
    guarded = client(token="s3cret")
    refused = guarded.get("/usage")
    assert refused.status_code == 401
    assert "Bearer" in refused.headers["www-authenticate"] and "Basic" in refused.headers["www-authenticate"]
    assert "--admin-token" in refused.text
    assert guarded.get("/usage", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/usage", headers=admin_headers("s3cret")).status_code == 200
    basic = base64.b64encode(b"admin:s3cret").decode()
    assert guarded.get("/usage", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert guarded.get("/usage", headers={"Authorization": "Basic !!"}).status_code == 401


def test_the_token_does_not_let_a_foreign_host_in() -> None:
    answer = client(token="s3cret").get("/usage", headers={"Host": f"evil.example:{PORT}", **admin_headers("s3cret")})
    assert answer.status_code == 403


def test_the_admin_token_is_read_like_the_orchestrator_secret(tmp_path: Path) -> None:
    assert read_admin_token("", env={}) == ""
    assert read_admin_token(" tok ", env={}) == "tok"
    assert read_admin_token("", env={"LPNODE_ADMIN_TOKEN": "from-env"}) == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert read_admin_token(str(tmp_path / "token"), env={}) == "from-file"
    assert read_admin_token("", env={"LPNODE_ADMIN_TOKEN": str(tmp_path / "token")}) == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"the admin token file .* is empty"):
        read_admin_token(str(tmp_path / "empty"), env={})


def test_the_public_node_view_keeps_pids_paths_urls_and_stream_ids_to_the_admin_api() -> None:
    runner = {"name": "t2i_8000", "state": "IDLE", "pid": 4242, "log_path": "/root/.lpnode/logs/x.log"}
    status = {
        "version": "1",
        "service_url": "https://203.0.113.7:8935",
        "models": [{"pipeline": "text-to-image", "runners": [{**runner, "url": "http://127.0.0.1:8000"}]}],
        "byoc": [{"name": "echo", "url": "http://10.0.0.9:9000", "healthy": True}],
        "workers": [{"id": "w1", "address": "10.0.0.8:51234", "jobs_done": 3}],
        "live": [{"model_id": "noop", "manifest_id": "m", "stream_id": "s", "gateway_request_id": "r", "runner": "x"}],
    }
    public = public_status(status)
    assert public["models"] == [{"pipeline": "text-to-image", "runners": [{"name": "t2i_8000", "state": "IDLE"}]}]
    assert public["byoc"] == [{"name": "echo", "healthy": True}]
    assert public["workers"] == [{"id": "w1", "jobs_done": 3}]
    assert public["live"] == [{"model_id": "noop", "runner": "x"}]
    assert (public["version"], public["service_url"]) == ("1", "https://203.0.113.7:8935")
    assert status["models"][0]["runners"][0]["pid"] == 4242  # the admin view is left whole


def test_restarts_back_off_from_1s_to_30s_and_give_up_after_five_quick_exits() -> None:
    backoff = RestartBackoff()
    assert [backoff.after_exit(0.5) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff.after_exit(0.5) is None


def test_a_run_of_a_minute_resets_the_backoff() -> None:
    backoff = RestartBackoff(limit=100)
    delays = [backoff.after_exit(1.0) for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.after_exit(61.0) == 1.0 and backoff.quick_exits == 0
    assert backoff.after_exit(1.0) == 2.0


def test_an_exit_reason_names_the_signal_or_the_status() -> None:
    assert exit_reason(-9) == "was killed by SIGKILL"
    assert exit_reason(2) == "exited with status 2"
