"""`lpnode status` and `lpnode doctor` against a running `lpnode up` (the session's shared stack), and against
addresses where nothing answers."""

from __future__ import annotations

from procs import free_port, run_cli
from up_stack import Stack

PIPELINES = (
    "text-to-image", "image-to-image", "image-to-video", "upscale", "audio-to-text", "segment-anything-2", "llm",
    "image-to-text", "text-to-speech",
)  # fmt: skip


def test_status_prints_the_network_and_the_node_as_tables(stack: Stack) -> None:
    result = run_cli("status", "--gateway", stack.base_url, "--orchestrator", stack.orch_url, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"== gateway {stack.base_url}" in out and f"== orchestrator {stack.orch_url}" in out
    network = out.split("== orchestrator")[0]
    assert "PIPELINE" in network and "PRICE/UNIT" in network and "LATENCY" in network
    for pipeline in PIPELINES:
        rows = [line for line in network.splitlines() if line.startswith(pipeline + " ")]
        assert len(rows) == 1 and stack.orch_url in rows[0], network
    t2i = next(line for line in network.splitlines() if line.startswith("text-to-image "))
    assert " warm " in t2i
    node = out.split("== orchestrator")[1]
    assert "RUNNER" in node and "IDLE" in node and "text-to-image_lpnode-tiny-text-to-image_" in node


def test_status_says_which_target_is_unreachable_and_exits_non_zero(stack: Stack) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_cli("status", "--gateway", stack.base_url, "--orchestrator", nowhere, timeout=60)
    assert result.returncode == 1
    assert "text-to-image" in result.stdout
    assert f"orchestrator unreachable: {nowhere}/status: Connection refused" in result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_passes_every_check_on_lpnode_up(stack: Stack) -> None:
    result = run_cli(
        "doctor", "--orchestrator", stack.orch_url, "--gateway", stack.base_url,
        "--ai-models", str(stack.data_dir / "aiModels.json"), "--models-dir", str(stack.data_dir / "models"),
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], result.stdout
    # Only live pipelines skip the model files check: their models are not files in the models dir.
    skipped = [line for line in lines if line.startswith("SKIP")]
    assert all(line.startswith("SKIP  model files live-video-to-video ") for line in skipped), result.stdout
    for check in ("aiModels.json", "orchestrator answers", "runner text-to-image", "advertised from outside",
                  "gateway knows the orchestrator", "prices within", "request text-to-image"):  # fmt: skip
        assert any(line.startswith(f"PASS  {check}") for line in lines), (check, result.stdout)
    assert "loaded on cpu" in result.stdout and lines[-1].startswith("all ")


def test_doctor_names_the_cause_when_the_orchestrator_address_is_wrong(stack: Stack) -> None:
    wrong = f"https://127.0.0.1:{free_port()}"
    result = run_cli("doctor", "--orchestrator", wrong, "--gateway", stack.base_url, timeout=60)
    assert result.returncode == 1
    out = result.stdout
    assert f"FAIL  orchestrator answers: {wrong}/status: Connection refused" in out
    assert "FAIL  advertised from outside (GetOrchestrator): the service address does not answer gRPC" in out
    assert "fix: the service address (-serviceAddr) must be the host:port gateways can reach" in out
    assert "FAIL  gateway knows the orchestrator" in out and "-orchAddr" in out
    assert "Traceback" not in result.stderr
