"""A warm model missing from the models dir, on a real `lpnode orchestrator`: `/status` shows ERROR with the
runner's own reason (the `lpnode models pull` command), the runner is not restarted forever, and building
the model into the models dir brings it back without restarting the orchestrator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from procs import OrchestratorProcess, run_cli

T2I = "lpnode/tiny-text-to-image"


def model_status(node: OrchestratorProcess) -> dict[str, Any]:
    (model,) = node.get("/status", timeout=5).json()["models"]
    return model  # type: ignore[no-any-return]


def wait_for(node: OrchestratorProcess, done: Any, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        model = model_status(node)
        if done(model):
            return model
        assert time.monotonic() < deadline, f"not reached in {seconds:g}s: {model}\n{node.log()}"
        time.sleep(0.5)


def test_a_missing_warm_model_shows_error_with_the_pull_hint_and_returns_once_built(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    node = OrchestratorProcess(f"text-to-image:{T2I}:true", models_dir, tmp_path / "data", plain=True)
    try:
        node.wait_ready(timeout=120)
        hint = f"lpnode models pull {T2I} --models-dir {models_dir}"
        model = wait_for(node, lambda m: m["error"], 90)
        assert hint in model["error"]
        assert [(r["state"], r["problem"]) for r in model["runners"]] == [("ERROR", model["error"])]
        time.sleep(3)  # no further start follows the third failure
        log = node.log()
        assert log.count("runner process started") == 3, log
        assert hint in log.split("runner failed", 1)[1].splitlines()[0]  # said at the first failure
        assert "runner not restarted" in log

        built = run_cli("models", "tiny", "--pipeline", "text-to-image", "--models-dir", str(models_dir))
        assert built.returncode == 0, built.stderr
        model = wait_for(node, lambda m: [r["state"] for r in m["runners"]] == ["IDLE"], 60)
        assert model["error"] == "" and model["idle"] == 1  # loaded and free: jobs go to it again
    finally:
        node.stop()
