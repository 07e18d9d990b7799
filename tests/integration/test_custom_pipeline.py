"""Custom pipelines on real processes on loopback: a runner serving a class named by import path or by an
installed package's entry point, the errors a bad name gives, and an orchestrator (and its runner pool)
starting, supervising and lending such a runner.

The classes live in ``tests/custom_pipelines`` and ``examples/custom-pipeline``, outside lpnode's source
tree, and reach the child processes through ``PYTHONPATH`` as a user's own package would.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from PIL import Image

from custom_pipelines.installed import declare_pipelines
from lpclient import get_orchestrator
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import PoolTimings, ProcessSettings, RunnerPool
from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, child_env, run_cli, wait_gone

TESTS = Path(__file__).parents[1]
EXAMPLE_SRC = TESTS.parent / "examples" / "custom-pipeline" / "src"
WORD_COUNT = "custom_pipelines.text_stats:WordCountPipeline"


def python_path(*dirs: Path) -> str:
    return os.pathsep.join(str(d) for d in dirs)


@pytest.fixture(scope="module")
def word_count(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    logs = tmp_path_factory.mktemp("word-count")
    env = child_env(PYTHONPATH=python_path(TESTS))
    runner = RunnerProcess(["--pipeline-class", WORD_COUNT, "-O", "STOP_WORDS=a,an"], logs / "runner.log", env)
    try:
        yield runner
    finally:
        runner.stop()


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    """The example package, "installed" by its entry point only (a dist-info dir on PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("edges")
    site = declare_pipelines(
        tmp / "site", "lpnode-example-pipelines", {"edge-detect": "lpnode_example_pipelines.edges:EdgeDetect"}
    )
    env = child_env(PYTHONPATH=python_path(EXAMPLE_SRC, site))
    runner = RunnerProcess(["--pipeline", "edge-detect"], tmp / "runner.log", env)
    try:
        yield runner
    finally:
        runner.stop()


# --- a runner serving a class --------------------------------------------------------------------------


def test_runner_serves_the_class_named_by_import_path(word_count: RunnerProcess) -> None:
    seen = word_count.wait_status({"IDLE"})
    assert set(seen) <= {"LOADING", "IDLE"}
    response = word_count.post("/word-count", json={"text": "A cat, an owl and a cat.", "top": 2})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "words": 4,
        "unique": 3,
        "characters": 24,
        "top": [["cat", 2], ["owl", 1]],
        "model_id": "word-count",  # no model id given: the pipeline's name stands for it
    }
    assert word_count.get("/version").json()["pipeline"] == "word-count"


def test_invalid_input_gets_the_same_errors_as_built_in_pipelines(word_count: RunnerProcess) -> None:
    word_count.wait_status({"IDLE"})
    missing = word_count.post("/word-count", json={"txt": "hello"})
    assert missing.status_code == 422
    assert [(e["loc"], e["type"]) for e in missing.json()["detail"]] == [(["body", "text"], "missing")]
    too_many = word_count.post("/word-count", json={"text": "hello", "top": 50})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "top"]
    refused = word_count.post("/word-count", json={"text": " ... "})  # the class raises ValueError
    assert refused.status_code == 400
    assert refused.json() == {"detail": {"msg": "Word-count pipeline error: the text has no words"}}
    assert word_count.post("/text-to-image", json={"prompt": "x"}).status_code == 404


def test_openapi_documents_the_custom_route(word_count: RunnerProcess) -> None:
    doc = word_count.get("/openapi.json").json()
    operation = doc["paths"]["/word-count"]["post"]
    assert operation["operationId"] == "genWordCount" and operation["summary"] == "Count the words of a text."
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WordCountParams"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/WordCountResult"}
    assert {"400", "401", "422", "500", "503"} <= set(operation["responses"])
    assert doc["components"]["schemas"]["WordCountParams"]["required"] == ["text"]


def test_an_installed_package_serves_its_pipeline_by_name_with_file_uploads(edges: RunnerProcess) -> None:
    edges.wait_status({"IDLE"})
    picture = Image.new("RGB", (32, 24), (0, 0, 0))
    picture.paste((255, 255, 255), (8, 8, 24, 16))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = edges.post(
        "/edge-detect", files={"image": ("box.png", buffer.getvalue(), "image/png")}, data={"threshold": "40"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (32, 24)
    assert 0 < result["edge_fraction"] < 0.5
    prefix = "data:image/png;base64,"
    assert result["image"].startswith(prefix)
    traced = Image.open(io.BytesIO(base64.b64decode(result["image"][len(prefix) :])))
    assert traced.size == (32, 24) and traced.getpixel((16, 8)) == 255 and traced.getpixel((2, 2)) == 0
    not_image = edges.post("/edge-detect", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert not_image.status_code == 400
    assert not_image.json() == {
        "detail": {"msg": "Edge-detect pipeline error: the upload is not an image (PNG, JPEG or WebP)"}
    }
    form = edges.get("/openapi.json").json()["paths"]["/edge-detect"]["post"]["requestBody"]["content"]
    assert list(form) == ["multipart/form-data"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("custom_pipelines.nowhere:Counter", "pipeline class 'custom_pipelines.nowhere:Counter': no module named "
         "'custom_pipelines.nowhere'; install the package that provides it, or add its directory to PYTHONPATH"),
        ("custom_pipelines.text_stats:WordCounter", "pipeline class 'custom_pipelines.text_stats:WordCounter': module "
         "'custom_pipelines.text_stats' has no attribute 'WordCounter'; pipeline classes there: WordCountPipeline"),
        ("custom_pipelines.not_pipelines:Helper", "pipeline class 'custom_pipelines.not_pipelines:Helper' names "
         "class Helper, not a pipeline class: it must subclass lpnode.runner.pipelines.BatchPipeline"),
    ],
)  # fmt: skip
def test_a_bad_class_name_is_one_error_line_and_exit_2(target: str, message: str) -> None:
    result = run_cli("runner", "--pipeline-class", target, env=child_env(PYTHONPATH=python_path(TESTS)))
    assert (result.returncode, result.stderr, result.stdout) == (2, f"lpnode: error: {message}\n", "")


# --- an orchestrator serving it ------------------------------------------------------------------------


def wait_runner(
    node: OrchestratorProcess, state: str, not_pid: int | None = None, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (model,) = [m for m in node.status() if m["pipeline"] == "word-count"]
        runners: list[dict[str, Any]] = [r for r in model["runners"] if r["state"] == state and r["pid"] != not_pid]
        if runners:
            return runners[0]
        time.sleep(0.2)
    raise AssertionError(f"no word-count runner became {state}: {node.status()}\n{node.log()}")


def test_orchestrator_starts_supervises_and_restarts_a_custom_runner(tmp_path: Path) -> None:
    entries = [
        {"pipeline": "word-count", "pipeline_class": WORD_COUNT, "warm": True, "capacity": 1, "price_per_unit": 5}
    ]
    (tmp_path / "aiModels.json").write_text(json.dumps(entries))
    env = child_env(PYTHONPATH=python_path(TESTS))
    node = OrchestratorProcess(tmp_path / "aiModels.json", tmp_path / "models", tmp_path / "data", env=env)
    pids: list[int] = []
    try:
        node.wait_ready()
        (model,) = node.status()
        assert (model["pipeline"], model["model_id"], model["warm"], model["capacity"]) == (
            "word-count",
            "word-count",
            True,
            1,
        )
        first = wait_runner(node, "IDLE")
        pids.append(first["pid"])
        answer = aiohttp_post(first["url"] + "/word-count", {"text": "to be or not to be"})
        assert answer["top"] == [["to", 2], ["be", 2], ["or", 1]]
        # On the wire it is a BYOC capability (37) named after the pipeline, priced per second.
        info = get_orchestrator(node.base_url, node.cert)
        assert dict(info.capabilities.constraints.PerCapability) == {}
        assert [(p.capability, p.constraint, p.pricePerUnit) for p in info.capabilities_prices] == [
            (37, "word-count", 5)
        ]
        (byoc,) = node.get("/status").json()["byoc"]
        assert (byoc["name"], byoc["kind"], byoc["capacity"], byoc["healthy"]) == ("word-count", "pipeline", 1, True)
        # A gateway reaches it with a BYOC job, by name, with no change to the gateway.
        gateway = GatewayProcess(tmp_path / "gateway", "--orch-addr", node.base_url)
        try:
            header = base64.b64encode(
                json.dumps({"request": "{}", "capability": "word-count", "timeout_seconds": 30}).encode()
            ).decode()
            for path in ("word-count", ""):
                answer = requests.post(
                    f"{gateway.base_url}/process/request/{path}",
                    json={"text": "to be or not to be"},
                    headers={"Livepeer": header},
                    timeout=60,
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["words"] == 6
                assert answer.headers["X-Orchestrator-Url"] == node.base_url
        finally:
            gateway.stop()
        os.kill(first["pid"], signal.SIGKILL)
        second = wait_runner(node, "IDLE", not_pid=first["pid"])
        pids.append(second["pid"])
        assert second["slot"] == first["slot"]
        assert aiohttp_post(second["url"] + "/word-count", {"text": "again"})["words"] == 1
    finally:
        pids += node.runner_pids() if node.proc.poll() is None else []
        assert node.stop() == 0, node.log()
    assert wait_gone(pids) == [], f"runners left behind:\n{node.log()}"


async def post_json(url: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def aiohttp_post(url: str, body: dict[str, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(post_json(url, body), 30))


def test_the_pool_leases_a_cold_custom_runner(tmp_path: Path) -> None:
    config = AIModelConfig(pipeline="word-count", model_id="word-count", pipeline_class=WORD_COUNT)
    settings = ProcessSettings(
        models_dir=tmp_path / "models",
        env={"PYTHONPATH": python_path(TESTS), "TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
        stop_grace=5,
    )
    timings = PoolTimings(start_timeout=90, health_interval=0.5, ready_poll=0.2, close_timeout=20)

    async def scenario() -> int | None:
        async with RunnerPool([config], settings, tmp_path, timings=timings) as pool:
            async with pool.lease("word-count", "word-count") as leased:
                assert (await post_json(leased.url + "/word-count", {"text": "lent out"}))["words"] == 2
            (runner,) = pool.snapshot()[("word-count", "word-count")].runners
            assert runner.state == "IDLE" and not runner.warm
            return runner.pid

    pid = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert pid is not None and wait_gone([pid]) == []
