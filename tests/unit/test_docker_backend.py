"""The Docker runner backend, in process: go-livepeer's image map and overrides, the container each runner gets
(env, labels, read-only /models mount, loopback port, GPU device request), and start/stop/stale cleanup.

These tests are the fast tier: ``FakeEngine`` stands in for ``docker.from_env()`` and records what the backend
asks of it (a GPU device request, a failing image or a foreign container are easier to stage here), and the
backend's reaper is off. The same backend runs against a real engine in tests/integration/test_docker_runner.py
and in the runner-backend conformance kit (tests/conformance/test_runner_backend_conformance.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import docker  # type: ignore[import-untyped]
import pytest

from lpnode.errors import ConfigError
from lpnode.orchestrator.pool import RunnerSpec
from lpnode.orchestrator.pool import docker as backend_module
from lpnode.orchestrator.pool.docker import DockerBackend, DockerSettings, container_config, docker_available
from lpnode.orchestrator.pool.docker_images import ImageOverrides, container_image, parse_image_overrides

T = TypeVar("T")
ME = "https://orch.example:8935"
T2I = RunnerSpec("text-to-image", "ByteDance/SDXL-Lightning", slot=0)


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 10)

    return asyncio.run(bounded())


# --- a fake Docker engine ------------------------------------------------------------------------------


class FakeContainer:
    def __init__(self, engine: FakeEngine, name: str, labels: dict[str, str], **config: Any) -> None:
        engine.next_id += 1
        self.id, self.name, self.labels, self.config = f"c{engine.next_id}", name, labels, config
        self.engine = engine
        self.attrs: dict[str, Any] = {"State": {"Status": "created", "ExitCode": 0}}
        self.calls: list[str] = []
        self.log_bytes = b"runner: loading model\nrunner: ready\n"
        self.exit_on_start: int | None = None
        engine.containers_by_id[self.id] = self

    def set_state(self, status: str, code: int = 0) -> None:
        self.attrs["State"] = {"Status": status, "ExitCode": code}

    def reload(self) -> None:
        if self.id not in self.engine.containers_by_id:
            raise docker.errors.NotFound(f"No such container: {self.id}")

    def start(self) -> None:
        self.calls.append("start")
        if self.exit_on_start is None:
            self.set_state("running")
        else:
            self.set_state("exited", self.exit_on_start)

    def stop(self, timeout: int) -> None:
        self.calls.append(f"stop {timeout}")
        self.set_state("exited", 143)

    def remove(self, force: bool = False) -> None:
        self.calls.append("remove")
        self.engine.containers_by_id.pop(self.id, None)

    def logs(self, stream: bool = False, follow: bool | None = None, tail: int | None = None) -> Any:
        if stream:
            assert follow is False  # following would never end
            return iter([self.log_bytes])
        return self.log_bytes


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def create(self, image: str, name: str, labels: dict[str, str], **config: Any) -> FakeContainer:
        if image not in self.engine.images:
            raise docker.errors.ImageNotFound(f"No such image: {image}")
        if any(c.name == name for c in self.engine.containers_by_id.values()):
            raise docker.errors.APIError("Conflict", response=_Response(409))
        container = FakeContainer(self.engine, name, labels, image=image, **config)
        if self.engine.exit_on_start is not None:
            container.exit_on_start = self.engine.exit_on_start
            container.log_bytes = b"loading ByteDance/SDXL-Lightning\nRuntimeError: CUDA error: no kernel image\n"
        self.engine.created.append(container)
        return container

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[FakeContainer]:
        key, _, value = (filters or {}).get("label", "").partition("=")
        return [c for c in self.engine.containers_by_id.values() if not key or c.labels.get(key) == value]


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.reason = "Conflict"
        self.url = "http://docker/containers/create"


class FakeEngine:
    """Stands in for ``docker.DockerClient``: ``containers.create/list``, ``ping`` and ``close``."""

    def __init__(self, images: tuple[str, ...] = ("livepeer/ai-runner:latest",)) -> None:
        self.images = set(images)
        self.containers_by_id: dict[str, FakeContainer] = {}
        self.created: list[FakeContainer] = []
        self.exit_on_start: int | None = None
        self.next_id = 0
        self.containers = FakeContainers(self)
        self.closed = False

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def settings(tmp_path: Path, **fields: Any) -> DockerSettings:
    return DockerSettings(models_dir=tmp_path / "models", creator_id=ME, **fields)


# --- images ----------------------------------------------------------------------------------------------


def test_batch_pipelines_use_go_livepeers_image_map() -> None:
    none = ImageOverrides()
    assert container_image("text-to-image", "m", none) == "livepeer/ai-runner:latest"
    assert container_image("llm", "m", none) == "livepeer/ai-runner:llm"
    assert container_image("audio-to-text", "m", none) == "livepeer/ai-runner:audio-to-text"
    assert container_image("image-to-text", "m", none, default="my/runner:1") == "my/runner:1"


def test_overrides_take_precedence_in_go_livepeers_order() -> None:
    overrides = ImageOverrides(default="my/default", batch={"llm": "my/llm", "upscale": "my/upscale"})
    assert container_image("llm", "m", overrides) == "my/llm"
    assert container_image("upscale", "m", overrides) == "my/upscale"
    assert container_image("text-to-image", "m", overrides, default="ignored") == "my/default"
    # The per-pipeline map comes before the default override, as in go-livepeer.
    assert container_image("text-to-speech", "m", overrides) == "livepeer/ai-runner:text-to-speech"


def test_live_pipelines_are_chosen_by_model_id() -> None:
    assert container_image("live-video-to-video", "comfyui", ImageOverrides()) == "livepeer/ai-runner:live-app-comfyui"
    assert container_image("live-video-to-video", "scope", ImageOverrides()) == "daydreamlive/scope-runner"
    overrides = ImageOverrides(default="ignored", live={"comfyui": "my/comfy", "mine": "my/live"})
    assert container_image("live-video-to-video", "comfyui", overrides) == "my/comfy"
    assert container_image("live-video-to-video", "mine", overrides) == "my/live"
    with pytest.raises(ConfigError, match="no container image found for live pipeline unknown-app"):
        container_image("live-video-to-video", "unknown-app", overrides)


def test_image_overrides_parse_go_livepeers_json() -> None:
    text = '{"default": "a/default", "batch": {"llm": "a/llm"}, "live": {"comfyui": "a/comfy"}}'
    assert parse_image_overrides(text) == ImageOverrides("a/default", {"llm": "a/llm"}, {"comfyui": "a/comfy"})
    assert parse_image_overrides('{"batch": {"llm": "a/llm"}}') == ImageOverrides(batch={"llm": "a/llm"})
    assert parse_image_overrides("  ") == ImageOverrides()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"default": "a",', "not valid JSON"),
        ('["a/llm"]', "must be a JSON object"),
        ('{"defualt": "a"}', "unknown key 'defualt'"),
        ('{"default": 3}', '"default" must be an image name'),
        ('{"batch": {"llm": 3}}', '"batch" must map names to images'),
        ('{"live": "a/comfy"}', '"live" must map names to images'),
    ],
)
def test_bad_image_overrides_are_a_one_line_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_image_overrides(text)
    assert "\n" not in str(caught.value)


# --- container configuration -----------------------------------------------------------------------------


def test_a_gpu_slot_gets_its_gpu_and_go_livepeers_container_settings(tmp_path: Path) -> None:
    spec = RunnerSpec("text-to-image", "ByteDance/SDXL_Lightning", slot=1, optimization_flags={"SFAST": "true"})
    config = container_config(spec, 8001, settings(tmp_path, gpus=("0", "1"), verbose_logs=True), "run1")
    assert config["image"] == "livepeer/ai-runner:latest"
    assert config["name"] == "text-to-image_ByteDance-SDXL-Lightning_8001"
    assert config["environment"] == {
        "PIPELINE": "text-to-image",
        "MODEL_ID": "ByteDance/SDXL_Lightning",
        "SFAST": "true",
        "VERBOSE_LOGGING": "1",
    }
    assert config["labels"] == {"creator": "ai-worker", "creator_id": ME, "lpnode.run": "run1"}
    assert config["volumes"] == {str(tmp_path / "models"): {"bind": "/models", "mode": "ro"}}
    assert config["ports"] == {"8000/tcp": ("127.0.0.1", 8001)}
    assert config["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert config["detach"] is True
    [request] = config["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]


def test_the_docker_sdk_turns_the_config_into_go_livepeers_host_config(tmp_path: Path) -> None:
    from docker.models.containers import _create_container_args  # what containers.create() sends

    config = container_config(RunnerSpec("llm", "m", slot=0), 8500, settings(tmp_path, gpus=("0",)))
    host_config = _create_container_args({**config, "version": "1.45"})["host_config"]
    assert host_config["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8500"}]}
    assert host_config["Binds"] == [f"{tmp_path}/models:/models:ro"]
    assert host_config["DeviceRequests"][0]["DeviceIDs"] == ["0"]
    assert host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_an_emulated_slot_has_no_device_request(tmp_path: Path) -> None:
    config = container_config(T2I, 8000, settings(tmp_path))
    assert "device_requests" not in config
    assert "VERBOSE_LOGGING" not in config["environment"]
    assert "device_requests" not in container_config(T2I, 8000, settings(tmp_path, gpus=("emulated-0",)))


def test_colocated_gpu_ids_map_to_the_hardware_gpu(tmp_path: Path) -> None:
    spec = RunnerSpec("llm", "m", slot=1)
    config = container_config(spec, 8512, settings(tmp_path, gpus=("colocated-0-2", "colocated-1-2")))
    assert config["device_requests"][0]["DeviceIDs"] == ["2"]


def test_flags_cannot_replace_the_pipeline_or_model(tmp_path: Path) -> None:
    spec = RunnerSpec("llm", "m", slot=0, optimization_flags={"PIPELINE": "x", "MODEL_ID": "y"})
    env = container_config(spec, 8500, settings(tmp_path))["environment"]
    assert (env["PIPELINE"], env["MODEL_ID"]) == ("llm", "m")


def test_extra_env_and_the_safety_checker_reach_the_container_below_the_contract(tmp_path: Path) -> None:
    extra = {"TORCH_THREADS": "1", "PIPELINE": "x", "SFAST": "false"}
    spec = RunnerSpec("text-to-image", "m", slot=0, optimization_flags={"SFAST": "true"})
    config = container_config(spec, 8000, settings(tmp_path, env=extra, safety_checker_id="lpnode/tiny-checker"))
    assert config["environment"] == {
        "TORCH_THREADS": "1",
        "PIPELINE": "text-to-image",
        "MODEL_ID": "m",
        "SFAST": "true",
        "SAFETY_CHECKER_MODEL_ID": "lpnode/tiny-checker",
    }
    assert config["labels"] == {"creator": "ai-worker", "creator_id": ME}  # no run id: no run label


def test_a_slot_beyond_the_gpus_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="runner slot 2 has no GPU: the GPUs are 0, 1"):
        container_config(RunnerSpec("llm", "m", slot=2), 8502, settings(tmp_path, gpus=("0", "1")))


# --- the backend against a fake engine -------------------------------------------------------------------


def test_start_runs_a_container_and_stop_removes_it_keeping_its_logs(tmp_path: Path) -> None:
    engine = FakeEngine()
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False, log_dir=tmp_path / "logs")

    async def scenario() -> None:
        handle = await backend.start(T2I)
        [container] = engine.created
        assert container.calls == ["start"] and container.attrs["State"]["Status"] == "running"
        assert handle.name == container.name == f"text-to-image_ByteDance-SDXL-Lightning_{handle.port}"
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert container.config["ports"] == {"8000/tcp": ("127.0.0.1", handle.port)}
        assert (handle.pid, dict(handle.headers)) == (None, {})
        await handle.stop()
        await handle.stop()  # idempotent
        assert container.calls == ["start", "stop 8", "remove"]
        assert container.id not in engine.containers_by_id
        assert handle.log_path is not None
        text = handle.log_path.read_text()
        assert text.startswith(f"--- lpnode pool: logs of {handle.name}") and "runner: ready" in text
        await backend.close()
        assert engine.closed

    run(scenario())


def test_the_first_start_removes_stale_containers_by_go_livepeers_rule(tmp_path: Path) -> None:
    engine = FakeEngine()
    mine = FakeContainer(engine, "old-mine", {"creator": "ai-worker", "creator_id": ME})
    legacy = FakeContainer(engine, "old-legacy", {"creator": "ai-worker"})
    other = FakeContainer(engine, "other-node", {"creator": "ai-worker", "creator_id": "https://other:8935"})
    unrelated = FakeContainer(engine, "postgres", {})
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False)

    async def scenario() -> None:
        handle = await backend.start(T2I)
        assert set(engine.containers_by_id) == {other.id, unrelated.id, engine.created[0].id}
        assert mine.calls == legacy.calls == ["stop 8", "remove"]
        # Called again (e.g. by the orchestrator), it leaves this backend's own runners alone.
        assert await backend.remove_stale_containers() == 0
        assert engine.created[0].id in engine.containers_by_id
        await handle.stop()
        await backend.close()

    run(scenario())


def test_a_missing_image_says_to_pull_it(tmp_path: Path) -> None:
    engine = FakeEngine(images=())
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False)
    with pytest.raises(RuntimeError, match=r"image livepeer/ai-runner:llm is not on this machine; run `docker pull "):
        run(backend.start(RunnerSpec("llm", "meta-llama/Llama-3.1-8B-Instruct", slot=0)))


def test_a_name_clash_with_a_foreign_container_says_how_to_remove_it(tmp_path: Path) -> None:
    engine = FakeEngine()
    backend = DockerBackend(settings(tmp_path, port_bases={"text-to-image": 18000}), lambda: engine, reap_on_exit=False)
    FakeContainer(engine, "text-to-image_ByteDance-SDXL-Lightning_18000", {"creator": "someone-else"})
    with pytest.raises(RuntimeError, match=r"exists already; remove it: `docker rm -f text-to-image_ByteDance"):
        run(backend.start(T2I))


def test_a_container_that_exits_while_starting_fails_fast_with_its_last_log_lines(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.exit_on_start = 1
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False, log_dir=tmp_path / "logs")
    with pytest.raises(RuntimeError) as caught:
        run(backend.start(T2I))
    message = str(caught.value)
    assert (
        "exited with code 1 while starting; last log: loading ByteDance/SDXL-Lightning | RuntimeError: CUDA" in message
    )
    assert "\n" not in message and "full log: " in message
    assert engine.containers_by_id == {}  # removed, its logs kept
    assert "CUDA error" in next((tmp_path / "logs").glob("*.log")).read_text()


def test_wait_exit_reports_the_containers_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "POLL_SECONDS", 0.01)
    engine = FakeEngine()
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False)

    async def scenario() -> int | None:
        handle = await backend.start(T2I)
        waiter = asyncio.ensure_future(handle.wait_exit())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        engine.created[0].set_state("exited", 137)
        code = await waiter
        await backend.close()
        return code

    assert run(scenario()) == 137


def test_close_stops_every_container_it_started(tmp_path: Path) -> None:
    engine = FakeEngine(images=("livepeer/ai-runner:latest", "livepeer/ai-runner:llm"))
    backend = DockerBackend(settings(tmp_path), lambda: engine, reap_on_exit=False)

    async def scenario() -> None:
        await asyncio.gather(backend.start(T2I), backend.start(RunnerSpec("llm", "m", slot=1)))
        assert len(engine.containers_by_id) == 2
        await backend.close()

    run(scenario())
    assert engine.containers_by_id == {}
    assert all(c.calls == ["start", "stop 8", "remove"] for c in engine.created)


def test_without_an_engine_start_fails_and_availability_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    def no_engine() -> Any:
        raise docker.errors.DockerException("Error while fetching server API version: Connection aborted.")

    reason = docker_available(no_engine)
    assert reason == (
        "no Docker engine at unix:///var/run/docker.sock: Error while fetching server API version: Connection aborted."
    )
    assert docker_available(FakeEngine) is None
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert docker_available() == (
        f"no Docker engine at unix://{tmp_path}/docker.sock: {tmp_path}/docker.sock does not exist; "
        "is Docker installed and running?"
    )
    monkeypatch.delenv("DOCKER_HOST")
    with pytest.raises(RuntimeError, match=r"^no Docker engine at unix:///var/run/docker\.sock: "):
        run(DockerBackend(settings(tmp_path), no_engine, reap_on_exit=False).start(T2I))


def test_a_runner_app_container_registers_with_the_orchestrator_through_the_host(tmp_path: Path) -> None:
    """aiModels.json "runner_app": the container gets the registration env with the orchestrator's loopback host made
    reachable from inside it, and its own published address to be called back on; a classic one gets none of it."""
    from lpnode.orchestrator.ai_models import RunnerAppOption
    from lpnode.orchestrator.pool.runner_app_env import RunnerAppHost

    host = RunnerAppHost(url="https://127.0.0.1:8935", secret="s3cret")
    leaked = {"ORCH_SECRET": "from-the-orchestrator-env", "TORCH_THREADS": "2"}
    app = RunnerSpec("text-to-image", "m", slot=0, runner_app=RunnerAppOption(name="t2i"))
    config = container_config(app, 8004, settings(tmp_path, runner_apps=host, env=leaked))
    env = config["environment"]
    assert env["LIVE_RUNNER_ORCH"] == "https://host.docker.internal:8935"
    assert env["ORCH_SECRET"] == "s3cret" and env["LIVE_RUNNER_APP_NAME"] == "t2i"
    assert env["LIVE_RUNNER_PUBLIC_URL"] == "http://127.0.0.1:8004" and env["TORCH_THREADS"] == "2"
    assert config["extra_hosts"] == {"host.docker.internal": "host-gateway"}
    classic = container_config(T2I, 8005, settings(tmp_path, runner_apps=host, env=leaked))
    assert not {"ORCH_SECRET", "LIVE_RUNNER_ORCH", "LIVE_RUNNER_PUBLIC_URL"} & set(classic["environment"])
    assert "extra_hosts" not in classic
