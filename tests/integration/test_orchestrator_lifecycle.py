"""Starting and stopping `lpnode orchestrator`: bad configuration is refused with exact lines, and no runner
outlives the orchestrator, whether it is stopped (SIGTERM) or killed (SIGKILL)."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from procs import OrchestratorProcess, run_cli, wait_gone

T2I = "lpnode/tiny-text-to-image"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_runner_outlives_the_orchestrator(sig: int, models_dir: Path, tmp_path: Path) -> None:
    ai_models = f"text-to-image:{T2I}:true"  # the inline form
    node = OrchestratorProcess(ai_models, models_dir, tmp_path / "data", plain=True)
    try:
        node.wait_ready()
        pids = node.runner_pids()
        assert len(pids) == 1
    finally:
        code = node.stop(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), node.log()
    assert wait_gone(pids) == [], f"runner {pids} outlived the orchestrator"
    if sig == signal.SIGTERM:
        assert "runner pool closed" in node.log()


BAD_FILES = {
    "bad-json": ("[{\"pipeline\": \"text-to-image\",", ["bad.json: not valid JSON"]),
    "unknown-pipeline": (
        [{"pipeline": "text-to-imag", "model_id": "a/b"}],
        ["bad.json entry 1 (text-to-imag, \"a/b\"): pipeline 'text-to-imag' is not a Livepeer AI pipeline; "
         "did you mean 'text-to-image'?"],
    ),
    "string-price": (
        [{"pipeline": "llm", "model_id": "x/y", "price_per_unit": "0.5USD"}],
        ["bad.json entry 1 (llm, \"x/y\"): price_per_unit must be a number, got \"0.5USD\"; "
         "write 0.5 without quotes and put \"USD\" in \"currency\""],
    ),
    "warm-and-cold": (
        [{"pipeline": "upscale", "model_id": "m/n", "warm": True}, {"pipeline": "upscale", "model_id": "m/n"}],
        ["bad.json: upscale \"m/n\" is configured both warm and cold; keep one of the two"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_ai_models_file_stops_startup_with_one_line_per_problem(case: str, tmp_path: Path) -> None:
    content, expected = BAD_FILES[case]
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    result = run_cli("orchestrator", "-aiModels", str(path), "-serviceAddr", "127.0.0.1:1", "-dataDir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), result.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"lpnode: error: {start}"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-network", "arbitrum-one-mainnet"], "-network arbitrum-one-mainnet needs -ethUrl"),
        (["--service-addr", "https://example.com:8935/path"], "must not have a path"),
        (["--nvidia", "zero"], "give all, none, or GPU ids such as 0,1"),
        ([], "give --ai-models FILE"),
    ],
)
def test_bad_flags_are_one_line(flags: list[str], message: str, tmp_path: Path) -> None:
    models = [] if not flags else ["--ai-models", f"text-to-image:{T2I}:true"]
    result = run_cli("orchestrator", *models, "--data-dir", str(tmp_path), *flags)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_busy_port_is_refused_before_any_runner_starts(models_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "orchestrator",
            "--ai-models",
            f"text-to-image:{T2I}:true",
            "--models-dir",
            str(models_dir),
            "--service-addr",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path),
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert not (tmp_path / "logs").exists(), "no runner may start when the port is taken"


def test_a_stop_while_an_external_runner_is_unreachable_is_clean(tmp_path: Path) -> None:
    """SIGTERM while the pool still waits for a `url` runner that never answers: a clean exit, no traceback."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    path = tmp_path / "aiModels.json"
    path.write_text(json.dumps([{"pipeline": "text-to-image", "model_id": "a/b", "url": f"http://127.0.0.1:{dead}"}]))
    node = OrchestratorProcess(path, tmp_path / "models", tmp_path / "data", plain=True)
    try:
        deadline = time.monotonic() + 60
        while "Started server process" not in node.log():  # up, with the pool still waiting for the runner
            assert node.proc.poll() is None and time.monotonic() < deadline, node.log()
            time.sleep(0.1)
    finally:
        code = node.stop(signal.SIGTERM)
    assert code == 0, node.log()
    assert "Traceback" not in node.log() and "never retrieved" not in node.log(), node.log()
