"""An AI operator's go-livepeer start lines, run with `lpnode livepeer` instead of `livepeer`: the orchestrator
and the gateway serve a job, each flag lpnode has no use for is named in one warning line, once, and /metrics
carries go-livepeer's AI metric names after the job.

`-nvidia all` is left out of the orchestrator's line: this machine has no GPU (the flag's parsing is covered in
tests/unit/test_go_flags.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import requests

from procs import LPNODE, ChildProcess, child_env, free_port

T2I = "lpnode/tiny-text-to-image"


class LivepeerProcess(ChildProcess):
    """``lpnode livepeer FLAGS...``, its output in ``log_path``."""

    def __init__(self, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*LPNODE, "livepeer", *flags], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env())  # fmt: skip

    def wait_ok(self, url: str, verify: Path | None = None, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if (verify is None or verify.exists()) and requests.get(
                    url, timeout=2, verify=str(verify) if verify else True
                ).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(self.log())


def series(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric's samples in a Prometheus page."""
    return {labels: float(value) for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M)}


def test_go_livepeer_start_lines_serve_warn_once_and_export_go_metric_names(models_dir: Path, tmp_path: Path) -> None:
    ai_models = tmp_path / "aiModels.json"
    ai_models.write_text(json.dumps([{"pipeline": "text-to-image", "model_id": T2I, "warm": True}]))
    secret = tmp_path / "orch-secret.txt"
    secret.write_text("a-long-orchestrator-secret\n")
    port, orch_cli, http, gw_cli = free_port(), free_port(), free_port(), free_port()
    orch_data, gw_data = tmp_path / "orch", tmp_path / "gw"
    orchestrator = LivepeerProcess(
        tmp_path / "orchestrator.log",
        "-orchestrator", "-aiWorker", "-transcoder", "-network", "offchain",
        "-aiModels", str(ai_models), "-aiModelsDir", str(models_dir), "-serviceAddr", f"127.0.0.1:{port}",
        "-cliAddr", f"127.0.0.1:{orch_cli}", "-dataDir", str(orch_data), "-orchSecret", str(secret),
        "-pricePerUnit", "0", "-maxSessions", "10", "-autoAdjustPrice=false", "-aiRunnerContainersPerGPU", "1",
        "-monitor", "-v", "6", "--safety-checker", "lpnode/tiny-safety-checker",
    )  # fmt: skip
    gateway: LivepeerProcess | None = None
    try:
        cert = orch_data / "tls" / "cert.pem"
        orchestrator.wait_ok(f"https://127.0.0.1:{port}/healthz", verify=cert)
        gateway = LivepeerProcess(
            tmp_path / "gateway.log",
            "-gateway", "-httpIngest", "-network=offchain", "-orchAddr", f"127.0.0.1:{port}",
            "-httpAddr", f"127.0.0.1:{http}", "-cliAddr", f"127.0.0.1:{gw_cli}", "-datadir", str(gw_data),
            "-maxPricePerUnit", "0", "-discoveryTimeout", "1s", "-monitor", "-v", "6",
        )  # fmt: skip
        gateway.wait_ok(f"http://127.0.0.1:{http}/healthz", timeout=60)

        body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 2}
        answer = requests.post(f"http://127.0.0.1:{http}/text-to-image", json=body, timeout=120)
        assert answer.status_code == 200, (answer.text, gateway.log())
        assert answer.json()["images"]

        orch_page = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=10).text
        model = f'model_name="{T2I}"'
        (requested,) = [v for k, v in series(orch_page, "livepeer_ai_models_requested").items() if model in k]
        assert requested == 1 and 'node_type="orch"' in orch_page
        assert [k for k in series(orch_page, "livepeer_ai_request_latency_score") if model in k]
        assert [v for k, v in series(orch_page, "livepeer_ai_container_idle").items() if model in k] == [1]
        assert "livepeer_ai_container_in_use{" in orch_page
        assert series(orch_page, "lpnode_orchestrator_jobs_total")  # lpnode's own names stay beside them

        gw_page = requests.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text
        gw_requested = series(gw_page, "livepeer_ai_models_requested")
        assert [v for k, v in gw_requested.items() if model in k and f'127.0.0.1:{port}"' in k] == [1]
    finally:
        if gateway is not None:
            assert gateway.stop() == 0, gateway.log()
        assert orchestrator.stop() == 0, orchestrator.log()

    orch_warnings = [line for line in orchestrator.log().splitlines() if line.startswith("lpnode: warning: -")]
    assert orch_warnings == [
        "lpnode: warning: -transcoder: ignored: lpnode does not transcode video",
        "lpnode: warning: -pricePerUnit: ignored: AI prices come from aiModels.json (price_per_unit, "
        "pixels_per_unit, currency)",
        "lpnode: warning: -maxSessions: ignored: AI capacity comes from aiModels.json (capacity) and the runner slots",
        "lpnode: warning: -autoAdjustPrice: ignored: lpnode prices AI jobs exactly as aiModels.json says",
    ]
    gw_warnings = [line for line in gateway.log().splitlines() if line.startswith("lpnode: warning: -")]
    assert gw_warnings == [
        "lpnode: warning: -httpIngest: ignored: the gateway always serves the AI routes",
        "lpnode: warning: -discoveryTimeout: ignored: the gateway asks orchestrators for offers in the background",
    ]
    assert "a-long-orchestrator-secret" not in orchestrator.log()
