"""Runner apps (go-livepeer's Live Runner) on a real ``lpnode orchestrator``, black-box over HTTP.

One orchestrator (plain HTTP on loopback, ``-useLiveRunners`` with a secret and a static ``runners.json``) and one
small aiohttp app process serve every test; each test registers its own runners. Asserted as a client or runner
sees it: statuses and go-livepeer's error texts, discovery's shape, capacity under concurrency, the four
``Livepeer-*`` headers, SSE and WebSocket relayed, session trickle channels, O2R events, public proxy URLs,
heartbeat expiry (the real 20 s TTL), the static upsert on the admin port and health polling.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from procs import ChildProcess, OrchestratorProcess, child_env, free_port, run_cli

SECRET = "apps-secret"
APP = textwrap.dedent(
    """
    import asyncio, json, pathlib, sys
    from aiohttp import web

    FLAG = pathlib.Path(sys.argv[2])

    async def health(request):
        return web.Response(status=503 if FLAG.exists() else 200, text="ok")

    async def slow(request):
        await asyncio.sleep(1.0)
        return web.json_response({"slow": True})

    async def sse(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\\n\\n".encode())
            await asyncio.sleep(0.05)
        return response

    async def ws(request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str("echo:" + message.data + ":" + request.headers.get("Livepeer-Session-Id", ""))
        return socket

    async def echo(request):
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("livepeer-", "x-forwarded"))}
        query = request.raw_path.partition("?")[2]
        return web.json_response({"method": request.method, "path": request.path, "query": query,
                                  "headers": headers, "body": body.decode(errors="replace")})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", "/base/slow", slow)
    app.router.add_get("/base/sse", sse)
    app.router.add_get("/base/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


class AppProcess(ChildProcess):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.flag = tmp / "unhealthy"
        script = tmp / "app.py"
        script.write_text(APP)
        self.log_path = tmp / "app.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.port), str(self.flag)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(self.log())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path_factory.mktemp("app"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def orch(app: AppProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    tmp = tmp_path_factory.mktemp("orch")
    config = tmp / "runners.json"
    config.write_text(
        json.dumps(
            {
                "runners": [
                    {"label": "static-echo", "app": "echo/static", "runner_url": app.url + "/base",
                     "health_url": app.url + "/health", "mode": "single-shot", "capacity": 2, "gpu": -1},
                    {"label": "labelled", "routing": "label", "app": "echo/label", "runner_url": app.url,
                     "health_url": "/health", "metadata": "hello"},
                ]
            }
        )
    )  # fmt: skip
    process = OrchestratorProcess(
        "", tmp / "models", tmp, f"-orchSecret={SECRET}", "-useLiveRunners", f"-liveRunnerConfig={config}", plain=True
    )
    process.wait_ready(60)
    yield process
    assert process.stop() == 0, process.log()


def heartbeat(orch: OrchestratorProcess, body: dict[str, Any], auth: str = SECRET) -> requests.Response:
    return orch.post("/runners/heartbeat", data=json.dumps(body), headers={"Authorization": auth}, timeout=10)


def register(orch: OrchestratorProcess, app: AppProcess, /, **fields: Any) -> dict[str, Any]:
    body = {"runner_url": app.url + "/base", "app": "echo/test", **fields}
    answer = heartbeat(orch, body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def runners(orch: OrchestratorProcess) -> list[dict[str, Any]]:
    document = orch.get("/discovery").json()
    assert isinstance(document, list) and len(document) == 1 and document[0]["address"] == orch.base_url
    found: list[dict[str, Any]] = document[0].get("runners", [])
    return found


def entry(orch: OrchestratorProcess, runner_id: str) -> dict[str, Any] | None:
    return next((r for r in runners(orch) if f"/apps/{runner_id}/" in r["url"] + "/"), None)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_heartbeat_checks_the_body_before_credentials_then_the_secrets(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    bad = heartbeat(orch, {"runner_url": "not a url", "app": "x"}, auth="")
    assert (bad.status_code, bad.text) == (400, "invalid runner_url\n")
    assert bad.headers["content-type"].startswith("text/plain")
    wrong = heartbeat(orch, {"runner_url": app.url, "app": "x"}, auth="nope")
    assert (wrong.status_code, wrong.text) == (401, "invalid registration authorization\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"mode": "invalid"}, "mode"),
        ({"metadata": "a" * 1025}, "metadata must be at most 1024 bytes"),
        ({"status": "Ready"}, "status must be lowercase and trimmed"),
        ({"app": " padded"}, "app must be trimmed"),
        ({"capacity": -1}, "capacity must be >= 0"),
    ]
    for body, needle in cases:
        answer = heartbeat(orch, {"runner_url": app.url, "app": "x", **body})
        assert answer.status_code == 400 and needle in answer.text, (body, answer.text)
    raw = b'{"runner_url":"' + app.url.encode() + b'","app":"x","metadata":"\xff"}'
    invalid = orch.post("/runners/heartbeat", data=raw, headers={"Authorization": SECRET})
    assert invalid.status_code == 400 and "U+FFFD" in invalid.text

    first = register(orch, app, capacity=0, metadata="é" * 512, version="1.2")
    runner_id = first["runner_id"]
    assert runner_id.startswith("runner_") and len(runner_id) == 15
    assert first["orchestrator"] == orch.base_url
    assert (first["heartbeat_interval"], first["heartbeat_ttl"], first["session_ids"]) == ("5s", "20s", [])
    o2r = first["o2r"]
    assert o2r["name"] == "o2r" and o2r["mime_type"] == "application/json" and "internal_url" not in o2r
    assert o2r["channel_name"].startswith(runner_id + "-") and o2r["channel_name"] != f"{runner_id}-o2r"
    assert requests.get(o2r["url"] + "/next", timeout=5).status_code == 200
    listed = entry(orch, runner_id)
    assert listed == {
        "url": f"{orch.base_url}/apps/{runner_id}/session", "app": "echo/test", "version": "1.2",
        "metadata": "é" * 512, "mode": "persistent", "capacity": 1, "capacity_used": 0, "capacity_available": 1,
    }  # fmt: skip

    again = heartbeat(orch, {"runner_url": app.url, "app": "x", "runner_id": runner_id})
    assert (again.status_code, again.text) == (401, "invalid heartbeat authorization\n")
    secret = first["heartbeat_secret"]
    follow = heartbeat(
        orch, {"runner_url": app.url, "app": "echo/other", "runner_id": runner_id, "capacity": 3}, secret
    )
    assert follow.status_code == 200 and "heartbeat_secret" not in follow.json() and "o2r" not in follow.json()
    assert entry(orch, runner_id) is not None and entry(orch, runner_id)["capacity"] == 3  # type: ignore[index]
    proposed = register(orch, app, runner_id="my-runner")
    assert proposed["runner_id"] == "my-runner"

    gone = orch.post(f"/runners/{runner_id}/unregister", headers={"Authorization": "nope"})
    assert (gone.status_code, gone.text) == (401, "invalid authorization\n")
    assert orch.post(f"/runners/{runner_id}/unregister", headers={"Authorization": secret}).status_code == 204
    assert entry(orch, runner_id) is None
    assert requests.get(o2r["url"] + "/next", timeout=5).status_code == 404
    after = orch.post(f"/runners/{runner_id}/unregister", headers={"Authorization": secret})
    assert (after.status_code, after.text) == (404, "runner not found\n")


def test_single_shot_app_of_capacity_two_serves_two_of_six_concurrent_calls(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    runner_id = register(orch, app, mode="single_shot", capacity=2)["runner_id"]
    listed = entry(orch, runner_id)
    assert listed is not None and listed["url"] == f"{orch.base_url}/apps/{runner_id}/app"
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: orch.post(f"/apps/{runner_id}/app/slow", json={}), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 503, 503, 503, 503], [a.text for a in answers]
    assert {a.text for a in answers if a.status_code == 503} == {"no capacity available for runner\n"}
    assert entry(orch, runner_id)["capacity_used"] == 0  # type: ignore[index]
    refused = orch.post(f"/apps/{runner_id}/session")
    assert (refused.status_code, refused.text) == (400, "only persistent runners have sessions\n")


def test_proxy_forwards_path_query_body_and_sets_the_four_session_headers(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    runner_id = register(orch, app, mode="single-shot", capacity=4)["runner_id"]
    answer = orch.post(
        f"/apps/{runner_id}/app/v1/foo?x=1&y=%20z",
        data=b"payload",
        headers={"Livepeer-Session-Token": "forged", "X-Forwarded-For": "1.2.3.4"},
    )
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "POST",
        "/base/v1/foo",
        "x=1&y=%20z",
        "payload",
    )
    headers = seen["headers"]
    session_id = headers["Livepeer-Session-Id"]
    assert headers["Livepeer-Runner-Route"] == runner_id and session_id.startswith("session_")
    assert headers["Livepeer-Session-Token"] != "forged" and "X-Forwarded-For" not in headers
    assert headers["Livepeer-Session-Control"] == f"{orch.base_url}/runner/{runner_id}/session/{session_id}"
    other = orch.get(f"/apps/{runner_id}/app/v1/foo").json()["headers"]
    assert other["Livepeer-Session-Id"] != session_id  # every single-shot call is its own session


def test_sse_and_websocket_are_relayed(orch: OrchestratorProcess, app: AppProcess) -> None:
    runner_id = register(orch, app, capacity=2)["runner_id"]
    session = orch.post(f"/apps/{runner_id}/session").json()
    app_url = session["app_url"]
    assert app_url == f"{orch.base_url}/apps/{runner_id}/session/{session['session_id']}/app"

    async def talk() -> tuple[list[str], list[str]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(app_url + "/sse") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                events = [line.decode().strip() async for line in response.content if line.strip()]
            async with http.ws_connect(app_url.replace("http://", "ws://") + "/ws") as socket:
                replies = []
                for word in ("a", "b"):
                    await socket.send_str(word)
                    replies.append((await socket.receive(timeout=5)).data)
        return events, replies

    events, replies = asyncio.run(talk())
    assert events == ["data: 0", "data: 1", "data: 2"]
    assert replies == [f"echo:a:{session['session_id']}", f"echo:b:{session['session_id']}"]
    assert requests.post(session["control_url"] + "/stop", timeout=10).status_code == 204


def test_persistent_sessions_reserve_refuse_when_full_and_carry_trickle_channels(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    first = register(orch, app)
    runner_id = first["runner_id"]
    session = orch.post(f"/apps/{runner_id}/session").json()
    assert session["control_url"] == f"{orch.base_url}/apps/{runner_id}/session/{session['session_id']}"
    full = orch.post(f"/apps/{runner_id}/session")
    assert (full.status_code, full.text) == (503, "no capacity available for runner\n")
    assert entry(orch, runner_id)["capacity_available"] == 0  # type: ignore[index]

    headers = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x").json()["headers"]
    control, token = headers["Livepeer-Session-Control"], headers["Livepeer-Session-Token"]
    auth = {"Livepeer-Session-Token": token}
    wanted = {"channels": [{"name": "foo/bar", "mime_type": "video/mp2t"}, {"name": "events"}]}
    made = requests.post(control + "/channels", json=wanted, headers=auth, timeout=10)
    assert made.status_code == 200, made.text
    foo, events = made.json()["channels"]
    sid = session["session_id"]
    assert foo == {
        "name": "foo-bar", "channel_name": f"{sid}-foo-bar", "url": f"{orch.base_url}/ai/trickle/{sid}-foo-bar",
        "internal_url": f"{orch.base_url}/ai/trickle/{sid}-foo-bar", "mime_type": "video/mp2t",
    }  # fmt: skip
    assert events["mime_type"] == "application/octet-stream"
    again = requests.post(
        control + "/channels", json={"channels": [{"name": "foo/bar", "mime_type": "x/y"}]}, headers=auth
    )
    assert again.json()["channels"] == [foo]
    assert requests.get(foo["url"] + "/next", timeout=5).status_code == 200
    for body, code, text in [
        ({"channels": [{"name": "bad.name"}]}, 400, "trickle channel name may only contain"),
        ({"channels": [{"name": ""}]}, 400, "trickle channel name is required"),
        ({"channels": [{"name": f"c{i}"} for i in range(26)]}, 400, "more than 25 entries"),
        ({"channels": []}, 400, "channels is required"),
    ]:
        answer = requests.post(control + "/channels", json=body, headers=auth, timeout=10)
        assert answer.status_code == code and text in answer.text, answer.text
    for bad_auth in ({}, {"Livepeer-Session-Token": "wrong"}):
        answer = requests.post(control + "/channels", json=wanted, headers=bad_auth, timeout=10)
        assert (answer.status_code, answer.text) == (401, "invalid authorization\n")
    deleted = requests.delete(control + "/channels", json={"channels": ["events"]}, headers=auth, timeout=10)
    assert deleted.json() == {"deleted": ["events"]}
    assert requests.get(events["url"] + "/next", timeout=5).status_code == 404
    missing = requests.delete(control + "/channels", json={"channels": ["events"]}, headers=auth, timeout=10)
    assert (missing.status_code, missing.text) == (404, "trickle channel not found\n")

    assert requests.post(control + "/stop", headers={"Livepeer-Session-Token": "wrong"}).status_code == 401
    assert requests.post(control + "/stop", headers=auth, timeout=10).status_code == 204
    assert requests.get(foo["url"] + "/next", timeout=5).status_code == 404
    gone = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x")
    assert (gone.status_code, gone.text) == (404, "runner session not found\n")
    assert requests.post(session["control_url"] + "/stop", timeout=10).status_code == 204  # unknown session: still 204
    second = orch.post(f"/apps/{runner_id}/session")
    assert second.status_code == 200  # the slot came back
    assert requests.post(second.json()["control_url"] + "/stop", timeout=10).status_code == 204
    events_seen = o2r_events(first["o2r"]["url"])
    assert [e["event"] for e in events_seen][:4] == ["reserved", "released", "reserved", "released"]
    assert all(e["timestamp"] and e["session"] for e in events_seen)


def o2r_events(url: str) -> list[dict[str, Any]]:
    """Every reserved/released event on an O2R channel so far (keepalives skipped)."""
    latest = int(requests.get(url + "/next", timeout=5).text)
    out = []
    for seq in range(latest):
        message = requests.get(f"{url}/{seq}", timeout=5).json()
        if "event" in message:
            out.append(message)
    return out


def test_public_proxy_urls_reach_the_session_until_it_stops(orch: OrchestratorProcess, app: AppProcess) -> None:
    runner_id = register(orch, app, proxy=True, capacity=2)["runner_id"]
    one, two = (orch.post(f"/apps/{runner_id}/session").json() for _ in range(2))
    assert one["app_url"].startswith(orch.base_url + "/run/") and one["app_url"] != two["app_url"]
    assert one["session_id"] not in one["app_url"]
    path = one["app_url"].removeprefix(orch.base_url)
    seen = orch.get(path + "/foo/bar?q=1").json()
    assert (seen["path"], seen["query"]) == ("/base/foo/bar", "q=1")
    assert requests.post(one["control_url"] + "/stop", timeout=10).status_code == 204
    gone = orch.get(path + "/foo")
    assert (gone.status_code, gone.text) == (404, "live runner proxy not found\n")
    requests.post(two["control_url"] + "/stop", timeout=10)
    single = register(orch, app, mode="single-shot", proxy=True)["runner_id"]
    listed = entry(orch, single)
    assert listed is None  # listed by its proxy URL, not /apps/
    urls = [r["url"] for r in runners(orch)]
    assert f"{orch.base_url}/run/{single}" in urls
    assert orch.get(f"/run/{single}/v1/foo").json()["path"] == "/base/v1/foo"


def test_expired_runner_leaves_discovery_loses_its_sessions_and_its_secret(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    first = register(orch, app)
    runner_id, secret = first["runner_id"], first["heartbeat_secret"]
    session = orch.post(f"/apps/{runner_id}/session").json()
    until(lambda: entry(orch, runner_id) is None, 30, "the runner expires (20 s TTL)")
    lost = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x")
    assert (lost.status_code, lost.text) == (404, "runner not found\n")
    body = {"runner_url": app.url, "app": "echo/test", "runner_id": runner_id}

    def old_secret_refused() -> bool:
        return heartbeat(orch, body, secret).status_code == 401

    until(old_secret_refused, 10, "the old heartbeat secret is refused once the runner is swept")
    fresh = heartbeat(orch, body)
    assert fresh.status_code == 200 and fresh.json()["runner_id"] == runner_id
    assert fresh.json()["heartbeat_secret"] != secret and fresh.json()["session_ids"] == []


def test_static_runners_are_upserted_health_polled_and_refuse_heartbeats(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    listed = {r["app"]: r for r in runners(orch)}
    static, labelled = listed["echo/static"], listed["echo/label"]
    assert static["mode"] == "single-shot" and static["gpu"] == {"id": "-1"} and static["capacity"] == 2
    assert labelled["url"] == f"{orch.base_url}/apps/labelled/session" and labelled["metadata"] == "hello"
    assert orch.post(static["url"].removeprefix(orch.base_url) + "/v1").json()["path"] == "/base/v1"
    static_id = static["url"].split("/apps/")[1].split("/")[0]
    refused = heartbeat(orch, {"runner_url": app.url, "app": "x", "runner_id": static_id})
    assert (refused.status_code, refused.text) == (400, "static runner cannot heartbeat\n")

    upsert = orch.admin_url + "/registerLiveRunners"
    assert requests.get(upsert, timeout=5).status_code == 405
    document = {"runners": [{"label": "labelled", "routing": "label", "app": "echo/label", "runner_url": app.url,
                             "health_url": "/health", "capacity": 2}]}  # fmt: skip
    session = orch.post("/apps/labelled/session").json()
    done = requests.post(upsert, json=document, timeout=10)
    assert done.status_code == 200, done.text
    (item,) = done.json()["runners"]
    assert item["healthy"] is True and item["health_url"] == app.url + "/health" and item["healthy_status_code"] == 200
    assert {r["app"]: r for r in runners(orch)}["echo/label"]["capacity_used"] == 1  # the session survived
    huge = {"label": "x", "app": "a", "runner_url": app.url, "health_url": "/health", "metadata": "a" * 1025}
    bad = {"runners": [document["runners"][0] | {"capacity": 5}, huge]}
    refused = requests.post(upsert, json=bad, timeout=10)
    assert refused.status_code == 400 and refused.text.startswith("runners[1]: metadata")
    dup = requests.post(upsert, json={"runners": document["runners"] * 2}, timeout=10)
    assert (dup.status_code, dup.text) == (400, 'duplicate label "labelled"\n')
    assert {r["app"]: r for r in runners(orch)}["echo/label"]["capacity"] == 2  # the bad batch changed nothing

    app.flag.touch()  # the app turns unhealthy: hidden, its session released
    try:
        until(lambda: "echo/label" not in {r["app"] for r in runners(orch)}, 15, "unhealthy static runner hidden")
        gone = orch.get(session["app_url"].removeprefix(orch.base_url) + "/x")
        assert gone.status_code == 404
    finally:
        app.flag.unlink()
    until(lambda: "echo/label" in {r["app"] for r in runners(orch)}, 15, "healthy again")
    assert {r["app"]: r for r in runners(orch)}["echo/label"]["capacity_used"] == 0


def test_runner_apps_show_in_status_without_private_urls_on_the_public_port(
    orch: OrchestratorProcess, app: AppProcess
) -> None:
    register(orch, app, app="echo/status")
    admin = {r["app"]: r for r in orch.admin_get("/status").json()["runner_apps"]}
    public = {r["app"]: r for r in orch.get("/status").json()["runner_apps"]}
    assert admin["echo/status"]["runner_url"] == app.url + "/base" and admin["echo/status"]["kind"] == "dynamic"
    assert "runner_url" not in public["echo/status"] and public["echo/status"]["status"] == "ready"


def test_flags_are_checked_with_go_livepeers_words(tmp_path: Path) -> None:
    base = ["orchestrator", "--data-dir", str(tmp_path), "--service-addr", f"127.0.0.1:{free_port()}"]
    alone = run_cli(*base, "-useLiveRunners", timeout=60)
    assert alone.returncode != 0 and "running with -useLiveRunners requires -orchSecret" in alone.stderr
    for value, reason in [("go-livepeer:8935", "must be an absolute URL"), ("ftp://x:1", "scheme must be http")]:
        bad = run_cli(*base, f"-orchSecret={SECRET}", "-useLiveRunners", f"-liveRunnerAddr={value}", timeout=60)
        assert bad.returncode != 0 and f"invalid -liveRunnerAddr: {reason}" in bad.stderr, bad.stderr
    assert "Traceback" not in alone.stderr + bad.stderr


def test_a_node_without_runner_apps_says_they_are_not_supported(tmp_path: Path) -> None:
    process = OrchestratorProcess("", tmp_path / "models", tmp_path, f"-orchSecret={SECRET}", plain=True,
                                  env=child_env())  # fmt: skip
    try:
        process.wait_ready(60)
        for answer in (process.get("/discovery"), process.post("/runners/heartbeat", json={})):
            assert (answer.status_code, answer.text) == (404, "live runners are not supported\n")
    finally:
        assert process.stop() == 0
