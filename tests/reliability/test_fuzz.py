"""Fuzzing with schemathesis: requests generated from the runner's OpenAPI document (docs/openapi/runner.json)
against a real ``lpnode runner``, and from upstream's gateway document (openapi/gateway.openapi.yaml) against a
real gateway in front of a real orchestrator. Valid and invalid requests alike must get an answer below 500,
and no process may log a traceback.

The examples are derandomized (the same ones every run) and few, so the test is quick and stable; the
pipelines' limits are set low (``LPNODE_LIMITS``), so what is valid is also cheap to run on the tiny models.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from nodes import SAFETY, T2I, logs_with_tracebacks
from PIL import Image
from schemathesis import Case, GenerationMode

from procs import GatewayProcess, OrchestratorProcess, RunnerProcess, child_env

ROOT = Path(__file__).resolve().parents[2]
RUNNER_DOC = ROOT / "docs" / "openapi" / "runner.json"
GATEWAY_DOC = Path(__file__).parent / "openapi" / "gateway.openapi.yaml"
I2I = "lpnode/tiny-image-to-image"
LIMITS = {
    "text-to-image": {"max_steps": 4, "max_width": 256, "max_height": 256, "max_pixels": 64 * 64, "max_images": 2},
    "image-to-image": {"max_steps": 4, "max_images": 2, "max_input_pixels": 64 * 64},
}
MODELS = {"/text-to-image": T2I, "/image-to-image": I2I}
EXAMPLES = 25  # per operation and generation mode
REQUEST_TIMEOUT = 30.0


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(out, format="PNG")
    return out.getvalue()


PNG = png(64, 64)


def served(case: Case[Any], valid: bool) -> None:
    """Name the model this network serves: any other is refused at once (hostile model ids have their own
    tests). A valid request also keeps to the limits most of the time, so that some do reach the model."""
    if not isinstance(case.body, dict):
        return
    if "model_id" in case.body:
        case.body["model_id"] = MODELS[case.path]
    if not valid or len(str(case.body)) % 5 == 0:
        return  # one valid request in five as generated: over the limits, sizes the model cannot take ...
    # field: (step, choices): the value becomes step × (1 + its value modulo choices); absent, its default
    # (1024 wide, 50 steps, ...) would be over the limits, so it is set too.
    sizes = {"width": (8, 8), "height": (8, 8), "num_inference_steps": (1, 4), "num_images_per_prompt": (1, 2)}
    for field, (step, choices) in sizes.items():
        value = case.body.get(field, 0)
        if isinstance(value, int) and not isinstance(value, bool):
            case.body[field] = step * (1 + value % choices)
    if not str(case.body.get("prompt", "x")).strip():
        case.body["prompt"] = "a lighthouse"
    if "image" in case.body:
        case.body["image"] = PNG  # type: ignore[assignment]  # multipart: the file's bytes


def fuzz(schema: Any, path: str, base_url: str, examples: int = EXAMPLES) -> list[str]:
    """Send ``examples`` valid and as many invalid requests for each method of ``path``; every answer of 500 or
    more, or none at all, as one line. Each goes through :func:`served` first."""
    problems: list[str] = []
    for method in schema[path]:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                problems += _fuzz_operation(schema[path][method], mode, base_url, examples)
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, f"no valid request for {method} {path}"
                # a route without parameters or body: nothing about its request can be invalid
    return problems


def _fuzz_operation(operation: Any, mode: GenerationMode, base_url: str, examples: int) -> list[str]:
    problems: list[str] = []

    @hypothesis.settings(
        max_examples=examples, deadline=None, database=None, derandomize=True,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Case[Any]) -> None:
        served(case, valid=mode is GenerationMode.POSITIVE)
        sent = f"{case.method} {case.formatted_path} ({mode.value}) body={str(case.body)[:200]!r}"
        try:
            answer = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as error:
            problems.append(f"{sent}: no answer: {error}")
            return
        if answer.status_code >= 500:
            problems.append(f"{sent}: {answer.status_code} {answer.text[:300]}")

    send()
    return problems


def log_since(path: Path, offset: int) -> str:
    return path.read_bytes()[offset:].decode(errors="replace")


@pytest.fixture(scope="module")
def limits_env() -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LPNODE_LIMITS", json.dumps(LIMITS))  # child_env() passes it on to every process
        yield child_env()


@pytest.fixture(scope="module")
def runners(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory, limits_env: dict[str, str]
) -> Iterator[dict[str, RunnerProcess]]:
    logs = tmp_path_factory.mktemp("fuzz-runners")
    common = ["--models-dir", str(models_dir), "--safety-checker", SAFETY, "--max-in-flight", "1"]
    started = {
        "text-to-image": RunnerProcess(
            ["--pipeline", "text-to-image", "--model-id", T2I, *common], logs / "t2i.log", env=limits_env
        ),
        "image-to-image": RunnerProcess(
            ["--pipeline", "image-to-image", "--model-id", I2I, *common], logs / "i2i.log", env=limits_env
        ),
    }
    try:
        for runner in started.values():
            runner.wait_status({"IDLE"})
        yield started
    finally:
        for runner in started.values():
            runner.stop()


@pytest.mark.parametrize("pipeline", ["text-to-image", "image-to-image"])
def test_the_runner_answers_every_generated_request_below_500(runners: dict[str, RunnerProcess], pipeline: str) -> None:
    runner = runners[pipeline]
    schema = schemathesis.openapi.from_path(RUNNER_DOC)
    problems = fuzz(schema, f"/{pipeline}", runner.base_url)
    for path in ("/health", "/version", "/hardware/info"):
        problems += fuzz(schema, path, runner.base_url, examples=3)
    assert problems == [], "\n".join(problems)
    assert logs_with_tracebacks([runner.log_path]) == {}


def test_the_gateway_answers_every_generated_request_below_500(
    runners: dict[str, RunnerProcess], models_dir: Path, tmp_path: Path, limits_env: dict[str, str]
) -> None:
    entries = [
        {"pipeline": "text-to-image", "model_id": T2I, "url": runners["text-to-image"].base_url},
        {"pipeline": "image-to-image", "model_id": I2I, "url": runners["image-to-image"].base_url},
    ]
    (tmp_path / "aiModels.json").write_text(json.dumps(entries))
    orchestrator = OrchestratorProcess(tmp_path / "aiModels.json", models_dir, tmp_path / "orch", env=limits_env)
    gateway = None
    try:
        orchestrator.wait_ready()
        gateway = GatewayProcess(tmp_path / "gw", "--orch-addr", orchestrator.base_url, "--timeout", "30")
        offsets = {name: r.log_path.stat().st_size for name, r in runners.items()}
        schema = schemathesis.openapi.from_path(GATEWAY_DOC)
        problems: list[str] = []
        for path in MODELS:
            problems += fuzz(schema, path, gateway.base_url)
        assert problems == [], "\n".join(problems)
        for name, runner in runners.items():
            assert "Traceback" not in log_since(runner.log_path, offsets[name]), name
    finally:
        if gateway is not None:
            gateway.stop()
        orchestrator.stop()
    assert logs_with_tracebacks([tmp_path]) == {}
