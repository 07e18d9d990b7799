"""The runner-app heartbeat client against a small orchestrator written here from the research notes (§5):
registration with the orchestrator secret, heartbeats with the issued secret, re-registration after the
orchestrator forgets the runner, the O2R channel's events, unregister; and the runner's app flags."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from lpnode.errors import ConfigError
from lpnode.protocol.runner_apps import pipeline_app_metadata, read_pipeline_app_metadata
from lpnode.runner.app_advert import app_status, gpu_advert, parse_app_price, runner_url
from lpnode.runner.app_registration import AppAdvert, AppRegistration, OrchestratorLink
from lpnode.runner.config import config_from_env
from lpnode.schemas import GPUComputeInfo

T = TypeVar("T")
ORCH_SECRET = "orch-secret"
ADVERT = AppAdvert(
    runner_url="http://127.0.0.1:9999",
    app="text-to-image/tiny",
    mode="single-shot",
    capacity=2,
    version="1.2.3",
    metadata='{"pipeline":"text-to-image"}',
)


def run(coro: Awaitable[T], limit: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


class FakeOrchestrator:
    """``POST /runners/heartbeat``, ``POST /runners/{id}/unregister`` and the O2R trickle channel, as §5 says."""

    def __init__(self) -> None:
        self.beats: list[tuple[str, dict[str, Any]]] = []  # (Authorization, body) of every accepted heartbeat
        self.refusals: list[int] = []
        self.runners: dict[str, dict[str, Any]] = {}  # id -> {"secret", "o2r", "sessions"}
        self.o2r: dict[str, list[bytes]] = {}
        self.o2r_closed: set[str] = set()
        self.o2r_changed = asyncio.Event()
        self.unregistered: list[str] = []
        app = web.Application()
        app.router.add_post("/runners/heartbeat", self.heartbeat)
        app.router.add_post("/runners/{id}/unregister", self.unregister)
        app.router.add_get("/ai/trickle/{name}/{seq}", self.read_o2r)
        self.app = app
        self.url = ""

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.runner.cleanup()

    def refuse(self, status: int, text: str) -> web.Response:
        self.refusals.append(status)
        return web.Response(status=status, text=text + "\n")

    async def heartbeat(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError as exc:
            return self.refuse(400, str(exc))
        if not str(body.get("runner_url", "")).startswith(("http://", "https://")):
            return self.refuse(400, "invalid runner_url")  # validation comes before any auth check
        auth = request.headers.get("Authorization", "")
        runner_id = str(body.get("runner_id", "")).strip() or "runner_" + secrets.token_hex(4)
        record = self.runners.get(runner_id)
        if record is None:
            if auth != ORCH_SECRET:
                return self.refuse(401, "invalid registration authorization")
            name = f"{runner_id}-{secrets.token_hex(8)}-o2r"
            record = {"secret": secrets.token_hex(26), "o2r": name, "sessions": []}
            self.runners[runner_id] = record
            self.o2r[name] = []
            answer: dict[str, Any] = {"heartbeat_secret": record["secret"]}
            answer["o2r"] = {"name": "o2r", "channel_name": name, "url": f"{self.url}/ai/trickle/{name}"}
            answer["o2r"]["mime_type"] = "application/json"
        elif auth != record["secret"]:
            return self.refuse(401, "invalid heartbeat authorization")
        else:
            answer = {}
        self.beats.append((auth, body))
        answer.update(
            runner_id=runner_id,
            orchestrator=self.url,
            heartbeat_interval="500ms",
            heartbeat_ttl="20s",
            session_ids=list(record["sessions"]),
        )
        return web.json_response(answer)

    async def unregister(self, request: web.Request) -> web.Response:
        runner_id = request.match_info["id"]
        record = self.runners.get(runner_id)
        if record is None:
            return self.refuse(404, "runner not found")
        if request.headers.get("Authorization") != record["secret"]:
            return self.refuse(401, "invalid authorization")
        self.forget(runner_id)
        self.unregistered.append(runner_id)
        return web.Response(status=204)

    def forget(self, runner_id: str) -> None:
        record = self.runners.pop(runner_id)
        self.o2r_closed.add(record["o2r"])
        self.o2r_changed.set()

    def event(self, runner_id: str, event: str, session_id: str) -> None:
        record = self.runners[runner_id]
        if event == "reserved":
            record["sessions"].append(session_id)
        else:
            record["sessions"].remove(session_id)
        message = {"event": event, "session": session_id, "timestamp": "2026-01-01T00:00:00.000000001Z"}
        self.o2r[record["o2r"]].append(json.dumps(message).encode())
        self.o2r_changed.set()

    async def read_o2r(self, request: web.Request) -> web.StreamResponse:
        name, seq = request.match_info["name"], int(request.match_info["seq"])
        while True:
            if name not in self.o2r or name in self.o2r_closed:
                return web.Response(status=404, text="channel not found\n")
            if seq < len(self.o2r[name]):
                return web.Response(body=self.o2r[name][seq], headers={"Lp-Trickle-Seq": str(seq)})
            self.o2r_changed.clear()
            await self.o2r_changed.wait()


async def until(check: Any, limit: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def test_registers_with_the_orch_secret_then_heartbeats_with_the_issued_secret() -> None:
    async def scenario() -> None:
        orch = FakeOrchestrator()
        await orch.start()
        try:
            registration = AppRegistration(OrchestratorLink(orch.url, ORCH_SECRET), ADVERT, status=lambda: "ready")
            async with registration.running():
                await until(lambda: len(orch.beats) >= 3)
                runner_id = registration.runner_id
            first_auth, first = orch.beats[0]
            assert first_auth == ORCH_SECRET
            assert "runner_id" not in first and first["session_ids"] == []
            assert {k: first[k] for k in ("runner_url", "app", "mode", "capacity", "status", "version")} == {
                "runner_url": "http://127.0.0.1:9999",
                "app": "text-to-image/tiny",
                "mode": "single-shot",
                "capacity": 2,
                "status": "ready",
                "version": "1.2.3",
            }
            assert first["metadata"] == '{"pipeline":"text-to-image"}'
            assert "price_info" not in first and "gpu" not in first
            for auth, body in orch.beats[1:]:
                assert auth not in ("", ORCH_SECRET)
                assert body["runner_id"] == runner_id
            assert registration.interval == 0.5  # the orchestrator's "500ms"
            assert orch.unregistered == [runner_id]  # a clean stop unregisters
            assert orch.refusals == []
        finally:
            await orch.stop()

    run(scenario())


def test_a_status_change_is_heartbeated_at_once() -> None:
    async def scenario() -> None:
        orch = FakeOrchestrator()
        await orch.start()
        status = {"now": "loading"}
        try:
            registration = AppRegistration(
                OrchestratorLink(orch.url, ORCH_SECRET), ADVERT, status=lambda: status["now"]
            )
            async with registration.running():
                await until(lambda: len(orch.beats) >= 1)
                assert orch.beats[0][1]["status"] == "loading"
                status["now"] = "ready"
                await until(lambda: orch.beats[-1][1]["status"] == "ready", limit=0.45)  # before the next interval
        finally:
            await orch.stop()

    run(scenario())


def test_registers_again_with_the_same_id_after_the_orchestrator_forgets_it() -> None:
    async def scenario() -> None:
        orch = FakeOrchestrator()
        await orch.start()
        try:
            registration = AppRegistration(OrchestratorLink(orch.url, ORCH_SECRET), ADVERT, status=lambda: "ready")
            async with registration.running():
                await until(lambda: registration.registered.is_set())
                runner_id = registration.runner_id
                orch.forget(runner_id)  # an orchestrator restart, or an expiry after the TTL
                await until(lambda: 401 in orch.refusals)
                await until(lambda: runner_id in orch.runners)
                registrations = [body for auth, body in orch.beats if auth == ORCH_SECRET]
                assert len(registrations) == 2
                assert registrations[1]["runner_id"] == runner_id
                assert registration.runner_id == runner_id
        finally:
            await orch.stop()

    run(scenario())


def test_a_wrong_orch_secret_is_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        orch = FakeOrchestrator()
        await orch.start()
        try:
            registration = AppRegistration(OrchestratorLink(orch.url, "wrong"), ADVERT, status=lambda: "ready")
            async with registration.running():
                await until(lambda: len(orch.refusals) >= 1)
                await asyncio.sleep(5.5)  # one more try at the default interval
            assert not registration.registered.is_set()
            assert orch.runners == {} and orch.unregistered == []
        finally:
            await orch.stop()

    run(scenario())
    refusals = [r for r in caplog.records if "refused the runner app" in r.getMessage()]
    assert len(refusals) == 1
    assert "invalid registration authorization" in refusals[0].getMessage()
    assert "wrong" not in caplog.text  # no secret in the logs


def test_o2r_events_track_sessions_and_a_release_calls_the_hooks() -> None:
    async def scenario() -> None:
        orch = FakeOrchestrator()
        await orch.start()
        released: list[str] = []
        try:
            registration = AppRegistration(OrchestratorLink(orch.url, ORCH_SECRET), ADVERT, status=lambda: "ready")
            registration.on_released(released.append)
            async with registration.running():
                await until(lambda: registration.registered.is_set())
                runner_id = registration.runner_id
                orch.event(runner_id, "reserved", "session_aaaaaaaa")
                orch.event(runner_id, "reserved", "session_bbbbbbbb")
                await until(lambda: registration.sessions == ["session_aaaaaaaa", "session_bbbbbbbb"])
                await until(lambda: orch.beats[-1][1]["session_ids"] == ["session_aaaaaaaa", "session_bbbbbbbb"])
                orch.event(runner_id, "released", "session_aaaaaaaa")
                await until(lambda: released == ["session_aaaaaaaa"])
                assert registration.sessions == ["session_bbbbbbbb"]
                orch.forget(runner_id)  # the runner lost: its sessions are released with it
                await until(lambda: released == ["session_aaaaaaaa", "session_bbbbbbbb"])
        finally:
            await orch.stop()

    run(scenario())


def test_an_unreachable_orchestrator_is_no_crash() -> None:
    async def scenario() -> None:
        registration = AppRegistration(
            OrchestratorLink("http://127.0.0.1:9", ORCH_SECRET), ADVERT, status=lambda: "ready", request_timeout=1
        )
        async with registration.running():
            await asyncio.sleep(0.3)
        assert not registration.registered.is_set()

    run(scenario())


# -- what the runner advertises -----------------------------------------------------------------------------


def test_app_price_flag() -> None:
    assert parse_app_price("") is None
    assert parse_app_price("0.5") == {"price": 0.5, "currency": "usd", "unit": "hour"}
    assert parse_app_price("0.002/fixed") == {"price": 0.002, "currency": "usd", "unit": "fixed"}
    assert parse_app_price(" 1.25 / 720P ") == {"price": 1.25, "currency": "usd", "unit": "720p"}
    for bad in ("0", "-1", "wat", "1/minute", "nan"):
        with pytest.raises(ConfigError, match="--app-price"):
            parse_app_price(bad)


def test_metadata_names_the_pipeline_and_its_path() -> None:
    text = pipeline_app_metadata("text-to-image", "lpnode/tiny-text-to-image", "/text-to-image")
    assert text == '{"pipeline":"text-to-image","model_id":"lpnode/tiny-text-to-image","path":"/text-to-image"}'
    assert read_pipeline_app_metadata(text) == json.loads(text)
    for other in ("", "not json", "[]", '{"pipeline":"x"}', '{"pipeline":"x","model_id":"","path":"/x"}'):
        assert read_pipeline_app_metadata(other) is None


def test_status_follows_health() -> None:
    assert [app_status(h) for h in ("LOADING", "IDLE", "OK", "ERROR")] == ["loading", "ready", "ready", "error"]


def test_runner_url_and_gpu() -> None:
    assert runner_url("", "127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert runner_url("https://runner.example/base/", "0.0.0.0", 8000) == "https://runner.example/base"
    assert runner_url("", "::1", 8000) == "http://[::1]:8000"
    gpus = {
        "1": GPUComputeInfo(id="GPU-x", name="RTX 4090", memory_total=24 * 1024**3, memory_free=0, major=8, minor=9)
    }
    assert gpu_advert("cuda:1", gpus) == {"id": "1", "name": "RTX 4090", "vram_mb": 24 * 1024}
    assert gpu_advert("cpu", gpus) is None
    assert gpu_advert("", {}) is None


def test_app_flags_need_an_orchestrator_and_its_secret(tmp_path: Path) -> None:
    base = {"pipeline": "text-to-image", "model_id": "m"}
    with pytest.raises(ConfigError, match="--app-name only applies with --live-runner-orch"):
        config_from_env({}, **base, app_name="x")
    with pytest.raises(ConfigError, match="needs the orchestrator's secret"):
        config_from_env({}, **base, app_orchestrator="https://o:8935")
    with pytest.raises(ConfigError, match="http"):
        config_from_env({}, **base, app_orchestrator="o:8935", app_orch_secret="s")
    with pytest.raises(ConfigError, match="--app-price"):
        config_from_env({}, **base, app_orchestrator="https://o:8935", app_orch_secret="s", app_price="free")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    env = {"LIVE_RUNNER_ORCH": "https://o:8935", "ORCH_SECRET": str(secret_file), "LIVE_RUNNER_APP_CAPACITY": "3"}
    config = config_from_env(env, **base)
    assert (config.app_orchestrator, config.app_orch_secret, config.app_capacity) == (
        "https://o:8935",
        "from-a-file",
        3,
    )
    assert config_from_env({"ORCH_SECRET": "s"}, **base).app_orchestrator == ""  # a stray ORCH_SECRET is harmless
