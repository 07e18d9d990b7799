"""go-livepeer's Live Runner edge cases (research §20) not covered elsewhere, black-box over HTTP on a real
``lpnode orchestrator``: the runner-facing address (``-liveRunnerAddr``) against the public one, a flood of
wrong heartbeat secrets beside valid traffic, metadata limits and clearing, modes, a runner that is not ready,
the session proxy callback, a persistent runner on the single-shot route, an empty discovery, a static runner's
unregister refused and a channel delete of 26 names.

The orchestrator serves plain HTTP on 127.0.0.1 and names ``http://localhost:<port>`` as its runner-facing
address: both reach the same node, so each URL says which base it was built from.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from procs import ChildProcess, OrchestratorProcess, free_port

SECRET = "edge-secret"
APP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def echo(request):
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("livepeer-")}
        return web.json_response({"path": request.path, "headers": headers, "port": int(sys.argv[1])})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


class AppProcess(ChildProcess):
    """A tiny app answering every path with what it received; ``url`` is its base."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "app.py").write_text(APP)
        self.log_path = tmp / f"app-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(tmp / "app.py"), str(self.port)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(self.log())


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, AppProcess]]:
    first, second = AppProcess(tmp_path_factory.mktemp("app1")), AppProcess(tmp_path_factory.mktemp("app2"))
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def orch(
    apps: tuple[AppProcess, AppProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrchestratorProcess]:
    tmp = tmp_path_factory.mktemp("orch")
    config = tmp / "runners.json"
    # Unhealthy from the start (its health path answers 404): registered, never listed.
    static = {"label": "sick", "app": "edge/static", "runner_url": apps[0].url, "health_url": "/health",
              "healthy_status_code": 204}  # fmt: skip
    config.write_text(json.dumps({"runners": [static]}))
    port = free_port()
    flags = [f"-orchSecret={SECRET}", "-useLiveRunners", f"-liveRunnerConfig={config}"]
    flags += [f"-liveRunnerAddr=http://localhost:{port}", "--service-addr", f"http://127.0.0.1:{port}"]
    process = OrchestratorProcess("", tmp / "models", tmp, *flags, plain=True)
    process.port, process.base_url = port, f"http://127.0.0.1:{port}"
    process.wait_ready(60)
    yield process
    assert process.stop() == 0, process.log()


def heartbeat(orch: OrchestratorProcess, body: dict[str, Any], auth: str = SECRET) -> requests.Response:
    return orch.post("/runners/heartbeat", data=json.dumps(body), headers={"Authorization": auth}, timeout=10)


def register(orch: OrchestratorProcess, app: AppProcess, **fields: Any) -> dict[str, Any]:
    answer = heartbeat(orch, {"runner_url": app.url + "/base", "app": "edge/app", **fields})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def listed(orch: OrchestratorProcess, runner_id: str) -> dict[str, Any] | None:
    (document,) = orch.get("/discovery").json()
    return next((r for r in document.get("runners", []) if f"/{runner_id}/" in r["url"] + "/"), None)


def test_discovery_leaves_runners_out_when_none_is_ready(orch: OrchestratorProcess) -> None:
    answer = orch.get("/discovery")
    assert answer.status_code == 200 and answer.json() == [{"address": orch.base_url}]  # the static one is unhealthy


def test_a_static_runner_cannot_unregister_with_heartbeat_credentials(orch: OrchestratorProcess) -> None:
    status = orch.admin_get("/status").json()["runner_apps"]
    (static,) = [r for r in status if r["app"] == "edge/static"]
    assert static["status"] == "unavailable"
    refused = orch.post(f"/runners/{static['runner_id']}/unregister", headers={"Authorization": SECRET})
    assert (refused.status_code, refused.text) == (400, "static runner cannot unregister with heartbeat credentials\n")


def test_runner_facing_urls_use_the_runner_address_and_client_urls_the_public_one(
    orch: OrchestratorProcess, apps: tuple[AppProcess, AppProcess]
) -> None:
    runner_facing = orch.base_url.replace("127.0.0.1", "localhost")
    first = register(orch, apps[0])
    runner_id = first["runner_id"]
    assert first["orchestrator"] == runner_facing
    assert first["o2r"]["url"] == f"{runner_facing}/ai/trickle/{first['o2r']['channel_name']}"
    session = orch.post(f"/apps/{runner_id}/session").json()
    sid = session["session_id"]
    assert session["app_url"] == f"{orch.base_url}/apps/{runner_id}/session/{sid}/app"
    assert session["control_url"] == f"{orch.base_url}/apps/{runner_id}/session/{sid}"  # always the public base
    headers = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x").json()["headers"]
    control = headers["Livepeer-Session-Control"]
    assert control == f"{runner_facing}/runner/{runner_id}/session/{sid}"
    token = {"Livepeer-Session-Token": headers["Livepeer-Session-Token"]}
    made = requests.post(control + "/channels", json={"channels": [{"name": "out"}]}, headers=token, timeout=10)
    (channel,) = made.json()["channels"]
    assert channel["url"] == f"{orch.base_url}/ai/trickle/{sid}-out"
    assert channel["internal_url"] == f"{runner_facing}/ai/trickle/{sid}-out"
    names = {"channels": [f"c{i}" for i in range(26)]}
    too_many = requests.delete(control + "/channels", json=names, headers=token, timeout=10)
    assert (too_many.status_code, too_many.text) == (400, "channels cannot contain more than 25 entries\n")
    assert requests.post(session["control_url"] + "/stop", timeout=10).status_code == 204


def test_the_session_proxy_callback_makes_public_urls_to_the_runners_host_only(
    orch: OrchestratorProcess, apps: tuple[AppProcess, AppProcess]
) -> None:
    first, second = apps
    runner_id = register(orch, first, capacity=1)["runner_id"]
    session = orch.post(f"/apps/{runner_id}/session").json()
    headers = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x").json()["headers"]
    control, token = headers["Livepeer-Session-Control"], {"Livepeer-Session-Token": headers["Livepeer-Session-Token"]}
    try:
        made = [
            requests.post(control + "/proxy", headers=token, timeout=10),  # no body: the runner_url
            requests.post(control + "/proxy", json={}, headers=token, timeout=10),
            requests.post(control + "/proxy", json={"target_url": f"{second.url}/other"}, headers=token, timeout=10),
        ]
        assert [m.status_code for m in made] == [200, 200, 200], [m.text for m in made]
        urls = [m.json()["url"] for m in made]
        assert all(u.startswith(orch.base_url + "/run/") for u in urls) and len(set(urls)) == 3
        default = orch.get(urls[0].removeprefix(orch.base_url) + "/v1").json()
        assert (default["port"], default["path"]) == (first.port, "/base/v1")
        other = orch.get(urls[2].removeprefix(orch.base_url) + "/v1").json()
        assert (other["port"], other["path"]) == (second.port, "/other/v1")  # same host, its own port and path
        assert other["headers"]["Livepeer-Session-Id"] == session["session_id"]
        for body, text in [
            ({"target_url": "http://example.com/x"}, "target_url hostname must match registered runner_url hostname"),
            ({"target_url": "ftp://127.0.0.1/x"}, "target_url scheme must be http or https"),
            ({"target_url": f"{second.url}/x#frag"}, "target_url must not include a fragment"),
        ]:
            refused = requests.post(control + "/proxy", json=body, headers=token, timeout=10)
            assert (refused.status_code, refused.text) == (400, text + "\n")
        anonymous = requests.post(control + "/proxy", json={}, timeout=10)
        assert (anonymous.status_code, anonymous.text) == (401, "invalid authorization\n")
    finally:
        requests.post(session["control_url"] + "/stop", timeout=10)
    gone = orch.get(urls[0].removeprefix(orch.base_url) + "/v1")
    assert (gone.status_code, gone.text) == (404, "live runner proxy not found\n")  # proxies die with the session


def test_modes_metadata_and_a_persistent_runner_on_the_single_shot_route(
    orch: OrchestratorProcess, apps: tuple[AppProcess, AppProcess]
) -> None:
    modes = {}
    for mode in (None, "persistent", "single-shot", "single_shot"):
        fields = {} if mode is None else {"mode": mode}
        runner_id = register(orch, apps[0], **fields)["runner_id"]
        entry = listed(orch, runner_id)
        assert entry is not None
        modes[mode] = entry["mode"]
        if entry["mode"] == "persistent":
            wrong = orch.post(f"/apps/{runner_id}/app/x")
            assert (wrong.status_code, wrong.text) == (400, "runner is not single-shot\n")
    assert modes == {None: "persistent", "persistent": "persistent", "single-shot": "single-shot",
                     "single_shot": "single-shot"}  # fmt: skip

    first = register(orch, apps[0], metadata="a" * 1024)  # exactly the limit
    runner_id, secret = first["runner_id"], first["heartbeat_secret"]
    assert listed(orch, runner_id)["metadata"] == "a" * 1024  # type: ignore[index]
    body = {"runner_url": apps[0].url, "app": "edge/app", "runner_id": runner_id}
    assert heartbeat(orch, body | {"metadata": "updated"}, secret).status_code == 200
    assert listed(orch, runner_id)["metadata"] == "updated"  # type: ignore[index]
    assert heartbeat(orch, body | {"metadata": ""}, secret).status_code == 200
    assert "metadata" not in listed(orch, runner_id)  # type: ignore[operator]  # cleared: the key is left out


def test_a_runner_that_is_not_ready_is_hidden_and_cannot_be_reserved(
    orch: OrchestratorProcess, apps: tuple[AppProcess, AppProcess]
) -> None:
    first = register(orch, apps[0], capacity=2)
    runner_id, secret = first["runner_id"], first["heartbeat_secret"]
    session = orch.post(f"/apps/{runner_id}/session").json()
    body = {"runner_url": apps[0].url + "/base", "app": "edge/app", "runner_id": runner_id, "capacity": 2}
    assert heartbeat(orch, body | {"status": "loading"}, secret).status_code == 200
    assert listed(orch, runner_id) is None
    refused = orch.post(f"/apps/{runner_id}/session")
    assert (refused.status_code, refused.text) == (404, "runner not found\n")
    lost = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x")
    assert (lost.status_code, lost.text) == (404, "runner not found\n")
    back = heartbeat(orch, body | {"status": "ready"}, secret)
    assert back.json()["session_ids"] == [session["session_id"]]  # a not-ready status does not release sessions
    assert listed(orch, runner_id)["capacity_used"] == 1  # type: ignore[index]
    assert orch.get(session["app_url"].removeprefix(orch.base_url) + "/x").status_code == 200


def test_a_flood_of_wrong_heartbeat_secrets_is_refused_without_blocking_valid_calls(
    orch: OrchestratorProcess, apps: tuple[AppProcess, AppProcess]
) -> None:
    first = register(orch, apps[0])
    body = json.dumps({"runner_url": apps[0].url, "app": "edge/app", "runner_id": first["runner_id"]})

    async def flood() -> tuple[list[int], list[int]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def post(auth: str) -> int:
                url = orch.base_url + "/runners/heartbeat"
                async with http.post(url, data=body, headers={"Authorization": auth}) as answer:
                    return answer.status

            async def discovery() -> int:
                async with http.get(orch.base_url + "/discovery") as answer:
                    return answer.status

            wrong = [post(f"wrong-{i}") for i in range(200)]
            valid = [post(first["heartbeat_secret"]), discovery(), post(first["heartbeat_secret"]), discovery()]
            results = await asyncio.wait_for(asyncio.gather(*wrong, *valid), 30)
            return list(results[:200]), list(results[200:])

    wrong, valid = asyncio.run(flood())
    assert set(wrong) == {401} and valid == [200, 200, 200, 200]
