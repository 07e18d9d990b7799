"""Remote AI workers as an operator and a gateway see them: an orchestrator with no runners of its own
(``--orch-secret`` and an empty aiModels.json) and two ``lpnode worker`` processes attached to it over TLS,
all real processes on loopback with the tiny models.

Worker A serves text-to-image, image-to-image and llm, worker B text-to-image. The test that kills B runs last.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from lpclient import WORKER, get_orchestrator, job_headers
from lpnode.protocol.capabilities import Capability
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo
from procs import OrchestratorProcess, WorkerProcess, wait_gone

SECRET = "worker-test-secret"
T2I = "lpnode/tiny-text-to-image"
I2I = "lpnode/tiny-image-to-image"
LLM = "lpnode/tiny-llm"
MODELS_A = [
    {"pipeline": "text-to-image", "model_id": T2I, "warm": True},
    {"pipeline": "image-to-image", "model_id": I2I, "warm": True},
    {"pipeline": "llm", "model_id": LLM, "warm": True},
]
MODELS_B = [{"pipeline": "text-to-image", "model_id": T2I, "warm": True}]


def t2i_body(steps: int = 2, size: int = 64) -> dict[str, Any]:
    return {"prompt": "a lighthouse", "model_id": T2I, "width": size, "height": size, "num_inference_steps": steps}


def info_of(node: OrchestratorProcess) -> OrchestratorInfo:
    return get_orchestrator(node.base_url, node.cert)


def t2i_capacity(node: OrchestratorProcess) -> int:
    models = info_of(node).capabilities.constraints.PerCapability[Capability.TEXT_TO_IMAGE].models
    return models[T2I].capacity if T2I in models else 0


def wait_capacity(node: OrchestratorProcess, wanted: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if t2i_capacity(node) == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"text-to-image capacity never became {wanted}:\n{node.log()}")


def workers_status(node: OrchestratorProcess) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = node.admin_get("/status").json()["workers"]  # addresses: admin only
    return workers


@pytest.fixture(scope="module")
def orch(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    tmp = tmp_path_factory.mktemp("orchestrator")
    (tmp / "aiModels.json").write_text("[]")
    node = OrchestratorProcess(tmp / "aiModels.json", models_dir, tmp / "data", "--orch-secret", SECRET)
    try:
        node.wait_ready()
        yield node
    finally:
        assert node.stop() == 0, node.log()


@pytest.fixture(scope="module")
def workers(
    orch: OrchestratorProcess, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, WorkerProcess]]:
    tmp = tmp_path_factory.mktemp("workers")
    started: dict[str, WorkerProcess] = {}
    try:
        # One after the other: two runner pools starting at the same moment on one host can both pick the
        # same free runner port (each checks it is free, then starts a runner on it).
        for name, models, capacity in (("b", MODELS_B, 1), ("a", MODELS_A, 2)):
            (tmp / f"{name}.json").write_text(json.dumps(models))
            started[name] = WorkerProcess(orch.base_url, SECRET, tmp / f"{name}.json", models_dir, tmp / name)
            wait_capacity(orch, capacity)
        yield started
    finally:
        for worker in started.values():
            pids = worker.runner_pids()
            code = worker.stop()
            assert code in (0, -signal.SIGKILL), worker.log()
            assert wait_gone(pids) == [], f"runners left behind by a worker:\n{worker.log()}"


def test_workers_capacity_is_advertised_with_their_models(
    orch: OrchestratorProcess, workers: dict[str, WorkerProcess]
) -> None:
    caps = info_of(orch).capabilities
    t2i = caps.constraints.PerCapability[Capability.TEXT_TO_IMAGE].models[T2I]
    assert (t2i.warm, t2i.capacity) == (True, 2)  # runnerVersion too, unless /version was slow (a loaded host)
    i2i = caps.constraints.PerCapability[Capability.IMAGE_TO_IMAGE].models[I2I]
    assert (i2i.warm, i2i.capacity) == (True, 1)
    assert caps.bitstring[0] == (1 << 27) | (1 << 28) | (1 << 33)
    status = workers_status(orch)
    assert len(status) == 2
    assert all(w["models"] and w["connected_at"] and w["address"].startswith("127.0.0.1:") for w in status)


def test_jobs_spread_over_both_workers_and_answer_as_a_local_runner(
    orch: OrchestratorProcess, workers: dict[str, WorkerProcess]
) -> None:
    token = info_of(orch).auth_token
    for _ in range(4):
        response = orch.post("/text-to-image", json=t2i_body(), headers=job_headers(token))
        assert response.status_code == 200, response.text
        image = response.json()["images"][0]
        assert image["url"].startswith(f"{orch.base_url}/stream/") and "seed" in image and image["nsfw"] is False
        fetched = orch.get(image["url"].removeprefix(orch.base_url))
        assert fetched.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(fetched.content)).size == (64, 64)
    done = sorted(w["jobs_done"] for w in workers_status(orch))
    assert done == [2, 2]
    # A caller that is not a gateway gets the image inline, as a runner answers it.
    response = orch.post("/text-to-image", json=t2i_body(), headers=job_headers(token, worker=False))
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["url"].startswith("data:image/png;base64,")


def test_file_input_pipeline_runs_on_a_worker(orch: OrchestratorProcess, workers: dict[str, WorkerProcess]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 90)).save(buffer, format="PNG")
    form = {"prompt": "a red square", "model_id": I2I, "num_inference_steps": "4", "strength": "0.5"}
    response = orch.post(
        "/image-to-image",
        files={"image": ("square.png", buffer.getvalue(), "image/png")},
        data=form,
        headers=job_headers(info_of(orch).auth_token),
    )
    assert response.status_code == 200, response.text
    url = response.json()["images"][0]["url"]
    assert Image.open(io.BytesIO(orch.get(url.removeprefix(orch.base_url)).content)).size == (64, 64)


def test_llm_stream_is_relayed_as_server_sent_events(
    orch: OrchestratorProcess, workers: dict[str, WorkerProcess]
) -> None:
    body = {"model": LLM, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    response = orch.post("/llm", json=body, headers=job_headers(info_of(orch).auth_token), stream=True)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.iter_lines(decode_unicode=True) if line.startswith("data: {")]
    assert events and all(e["model"] == LLM for e in events)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_bad_request_gets_the_runners_400(orch: OrchestratorProcess, workers: dict[str, WorkerProcess]) -> None:
    body = t2i_body() | {"width": "wide"}
    response = orch.post("/text-to-image", json=body, headers=job_headers(info_of(orch).auth_token))
    assert response.status_code == 400
    assert response.text.startswith("text-to-image container returned 400: width")


def test_results_with_a_wrong_secret_are_refused(orch: OrchestratorProcess, workers: dict[str, WorkerProcess]) -> None:
    headers = {"Authorization": WORKER, "Credentials": "not-the-secret", "TaskId": "1", "Pipeline": "text-to-image"}
    wrong = orch.post("/aiResults", data=b"boom", headers=headers | {"Content-Type": "livepeer/ai-worker-error"})
    assert (wrong.status_code, wrong.text.strip()) == (401, "invalid credentials")
    no_auth = orch.post("/aiResults", data=b"boom", headers={**headers, "Authorization": "", "Credentials": SECRET})
    assert no_auth.status_code == 401
    unknown = orch.post("/aiResults", data=b"x", headers={**headers, "Credentials": SECRET, "TaskId": "999999"})
    assert unknown.status_code == 404


def test_worker_with_a_wrong_secret_stops_with_a_clear_error(
    orch: OrchestratorProcess, models_dir: Path, tmp_path: Path
) -> None:
    cold = "text-to-image:lpnode/tiny-text-to-image:false"  # nothing to load: the refusal comes at once
    worker = WorkerProcess(orch.base_url, "wrong", cold, models_dir, tmp_path)
    try:
        code = worker.proc.wait(timeout=60)
    finally:
        worker.stop()
    assert code == 2, worker.log()
    last = worker.log().strip().splitlines()[-1]
    assert last.startswith("lpnode: error: the orchestrator at") and "invalid secret" in last


def test_killing_a_worker_mid_job_still_completes_every_job(
    orch: OrchestratorProcess, workers: dict[str, WorkerProcess]
) -> None:
    token = info_of(orch).auth_token
    b_id = next(w["id"] for w in workers_status(orch) if len(w["models"]) == 1)
    b_runners = workers["b"].runner_pids()

    def job(_: int) -> int:
        for _ in range(400):  # a gateway retries a busy orchestrator; bounded
            response = orch.post("/text-to-image", json=t2i_body(steps=25, size=128), headers=job_headers(token))
            if response.status_code != 503:
                return response.status_code
            time.sleep(0.25)
        return 503

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = [pool.submit(job, i) for i in range(6)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill B while it holds a job
            if any(w["id"] == b_id and w["models"][0]["in_use"] for w in workers_status(orch)):
                break
            time.sleep(0.02)
        workers["b"].proc.send_signal(signal.SIGKILL)
        codes = [r.result(timeout=300) for r in results]
    assert codes == [200] * 6, f"{codes}\n{orch.log()}\n{workers['a'].log()}"
    assert wait_gone(b_runners) == [], "worker B's runner outlived it"
    wait_capacity(orch, 1)  # B's capacity is gone, A's remains
    assert [w["id"] for w in workers_status(orch)] != [b_id] and len(workers_status(orch)) == 1
    metrics = orch.get("/metrics").text
    lost = 'lpnode_orchestrator_remote_jobs_total{model_id="lpnode/tiny-text-to-image",outcome="lost"'
    assert lost in metrics, orch.log()
