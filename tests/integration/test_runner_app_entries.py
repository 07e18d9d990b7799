"""aiModels.json ``"runner_app": true``, end to end: the orchestrator starts that entry's runner as a Live Runner app
registered with itself, so the model is offered in ``GET /discovery`` and answers single-shot calls, and is not
offered on the pipeline's classic route as well (not in ``GetOrchestrator``; a classic job for it is refused).
An orchestrator that does not host runner apps refuses such an entry at start, in one line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lpclient import get_orchestrator, job_headers
from procs import OrchestratorProcess, run_cli, wait_gone

SECRET = "runner-app-entry-secret"
MODEL = "lpnode/tiny-text-to-image"
APP = "acme/tiny-images"


@pytest.fixture(scope="module")
def orchestrator(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    data = tmp_path_factory.mktemp("orch")
    ai_models = data / "aiModels.json"
    entry = {"pipeline": "text-to-image", "model_id": MODEL, "runner_app": {"name": APP}}
    ai_models.write_text(json.dumps([entry]))
    node = OrchestratorProcess(ai_models, models_dir, data, "--orch-secret", SECRET, "-useLiveRunners")
    try:
        node.wait_ready(timeout=120)
        yield node
    finally:
        pids = node.runner_pids()
        node.stop()
        assert wait_gone(pids) == [], "the app's runner outlived its orchestrator"


def wait_listed(orch: OrchestratorProcess, app: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = orch.get("/discovery", timeout=10)
        assert answer.status_code == 200, answer.text
        listed = [r for entry in answer.json() for r in entry.get("runners", []) if r["app"] == app]
        if listed:
            return listed[0]
        time.sleep(0.2)
    raise AssertionError(f"{app} never listed in discovery:\n{orch.log()}")


def test_a_runner_app_entry_is_listed_in_discovery_and_answers_single_shot_calls(
    orchestrator: OrchestratorProcess,
) -> None:
    entry = wait_listed(orchestrator, APP)
    assert entry["mode"] == "single-shot" and entry["capacity"] == 1
    assert json.loads(entry["metadata"])["model_id"] == MODEL
    path = entry["url"].removeprefix(orchestrator.base_url) + "/text-to-image"
    body = {"prompt": "a lighthouse", "seed": 3, "width": 64, "height": 64, "num_inference_steps": 2}
    answer = orchestrator.post(path, json=body)
    assert answer.status_code == 200, answer.text
    (image,) = answer.json()["images"]
    assert image["seed"] == 3 and image["url"].startswith("data:image/png;base64,")

    # The node view shows the runner under its model, marked as a runner app, and the app it registered.
    status = orchestrator.admin_get("/status").json()
    (model,) = [m for m in status["models"] if m["model_id"] == MODEL]
    assert model["runner_app"] is True and model["runners"][0]["state"] in {"IDLE", "OK"}
    assert [a["app"] for a in status["runner_apps"]] == [APP]


def test_a_runner_app_entry_is_not_offered_on_the_classic_route(orchestrator: OrchestratorProcess) -> None:
    wait_listed(orchestrator, APP)
    info = get_orchestrator(orchestrator.base_url, orchestrator.cert)
    assert [(h.pipeline, h.model_id) for h in info.hardware] == []  # GetOrchestrator offers no classic model
    body = {"model_id": MODEL, "prompt": "a lighthouse", "width": 64, "height": 64}
    classic = orchestrator.post("/text-to-image", json=body, headers=job_headers(info.auth_token))
    assert classic.status_code == 400, classic.text
    assert "served here only as a runner app" in classic.text and "/discovery" in classic.text


def test_a_runner_app_entry_needs_an_orchestrator_hosting_runner_apps(tmp_path: Path, models_dir: Path) -> None:
    ai_models = tmp_path / "aiModels.json"
    ai_models.write_text(json.dumps([{"pipeline": "text-to-image", "model_id": MODEL, "runner_app": True}]))
    args = ["--ai-models", str(ai_models), "--models-dir", str(models_dir), "--data-dir", str(tmp_path / "data")]
    done = run_cli("orchestrator", *args, "--service-addr", "127.0.0.1:1", "--orch-secret", SECRET, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "runner_app" in lines[0] and "-useLiveRunners" in lines[0]
