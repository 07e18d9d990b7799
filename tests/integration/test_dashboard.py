"""The dashboard pages in a real browser (headless Chromium, driven by Playwright), against `lpnode up`:
the network page on the gateway, the node page on the orchestrator, the usage page on the admin port, and
`lpnode dashboard --from` reading a go-livepeer /getNetworkCapabilities document.

Screenshots of each page go to the test's tmp folder, or to $LPNODE_SCREENSHOT_DIR when set:
`LPNODE_SCREENSHOT_DIR=docs/images .venv/bin/python -m pytest tests/integration/test_dashboard.py` refreshes
docs/images/dashboard.png.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from lpnode.up import DEMO_PRICES
from procs import LPNODE, OrchestratorProcess, child_env, free_port, run_cli
from up_stack import Stack

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

VIEWPORT = {"width": 1200, "height": 800}
T2I = {"model_id": "lpnode/tiny-text-to-image", "prompt": "a lighthouse", "width": 64, "height": 64}


class Browser:
    """One headless Chromium page; every console error and page error is kept in ``problems``."""

    def __init__(self, playwright: Any) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        # The orchestrator serves TLS with a self-signed certificate, as go-livepeer's do.
        self.context = self.browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
        self.context.set_default_timeout(20_000)
        self.problems: list[str] = []

    def page(self) -> Any:
        page = self.context.new_page()
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"{m.text} at {m.location}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: self.problems.append(f"dialog: {d.message}"))
        return page


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        held = Browser(playwright)
        try:
            yield held
        finally:
            held.context.close()
            held.browser.close()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Browser]:
    """The module's Chromium, its ``problems`` those of this test's pages: they are closed when the test ends, so
    none goes on polling a node the test stopped (its failed requests are not the next test's console errors)."""
    chromium.problems.clear()
    yield chromium
    for page in chromium.context.pages:
        page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("LPNODE_SCREENSHOT_DIR")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def orchestrator_status(stack: Stack) -> list[dict[str, Any]]:
    """The whole node view, runner PIDs included: the orchestrator's admin API's."""
    answer = requests.get(f"{stack.orch_admin_url}/status", timeout=10)
    answer.raise_for_status()
    models: list[dict[str, Any]] = answer.json()["models"]
    return models


def test_network_page_lists_every_model_with_warm_flag_price_and_measurements(
    stack: Stack, browser: Browser, shots: Path
) -> None:
    for _ in range(2):  # measured latency and success rate show for a model that served requests
        assert requests.post(f"{stack.base_url}/text-to-image", json=T2I, timeout=120).status_code == 200
    page = browser.page()
    page.goto(f"{stack.base_url}/dashboard")
    served = orchestrator_status(stack)
    for model in served:
        section = page.locator(f"section[aria-label='{model['pipeline']}']")
        block = section.locator("details", has=page.locator("summary", has_text=model["model_id"]))
        row = block.locator("tbody tr").first
        sync_api.expect(block.locator("summary")).to_contain_text(model["model_id"])
        sync_api.expect(row).to_contain_text("Warm" if model["warm"] else "Cold")
        sync_api.expect(row).to_contain_text(f"{DEMO_PRICES[model['pipeline']]:,} wei")  # per unit, as advertised
        sync_api.expect(row).to_contain_text(stack.orch_url)
    t2i = page.locator("section[aria-label='text-to-image'] tbody tr").first
    sync_api.expect(t2i).to_contain_text("100%")
    sync_api.expect(t2i).to_contain_text(" ms")
    sync_api.expect(page.locator("#usage-link")).to_be_hidden()  # usage lives on the admin port

    page.fill("#search", "tiny-llm")
    sync_api.expect(page.locator("section[aria-label='llm']")).to_be_visible()
    assert page.locator("section[aria-label='text-to-image']").count() == 0
    page.fill("#search", "")
    page.select_option("#pipeline", "text-to-image")
    sync_api.expect(page.locator("section[aria-label='llm']")).to_have_count(0)
    page.select_option("#pipeline", "")
    overview = page.locator("section[aria-label='overview'] tbody tr", has_text="lpnode/tiny-text-to-image")
    sync_api.expect(overview).to_contain_text("100%")
    page.evaluate("document.activeElement.blur()")
    page.screenshot(path=str(shots / "dashboard.png"))
    assert browser.problems == []


def test_usage_page_is_on_the_admin_port_only(stack: Stack, browser: Browser, shots: Path) -> None:
    public = requests.get(f"{stack.base_url}/dashboard/usage.json", timeout=10)
    assert public.status_code == 404 and "admin address" in public.text
    data = requests.get(f"{stack.admin_url}/dashboard/usage.json?window=15m", timeout=10).json()
    assert data["keys"] is False and sum(data["by_pipeline"]["text-to-image"]["requests"]) >= 2
    assert requests.get(f"{stack.admin_url}/dashboard/usage.json?window=2y", timeout=10).status_code == 400
    page = browser.page()
    page.goto(f"{stack.admin_url}/dashboard/usage")
    sync_api.expect(page.locator("#keys-note")).to_be_visible()  # keys are off in `lpnode up`
    sync_api.expect(page.locator("svg.chart")).to_have_count(4)
    page.select_option("#group", "by_pipeline")
    sync_api.expect(page.locator("#totals")).to_contain_text("text-to-image")
    page.screenshot(path=str(shots / "dashboard-usage.png"))
    assert browser.problems == []


def test_node_page_shows_runners_and_a_killed_runner_live(stack: Stack, browser: Browser, shots: Path) -> None:
    page = browser.page()
    page.goto(f"{stack.orch_admin_url}/dashboard")  # the operator's page, with runner PIDs
    served = orchestrator_status(stack)
    runners = [r for m in served for r in m["runners"]]
    assert runners, "`lpnode up` starts its warm runners"
    for runner in runners:
        row = page.locator("section[aria-label='runners'] tbody tr", has_text=runner["name"])
        sync_api.expect(row).to_contain_text(runner["state"])
        sync_api.expect(row).to_contain_text("cpu")
    page.screenshot(path=str(shots / "dashboard-node.png"))

    (victim,) = [r for m in served if m["pipeline"] == "text-to-image" for r in m["runners"]]
    os.kill(victim["pid"], signal.SIGKILL)
    model_row = page.locator("section[aria-label='models'] tbody tr", has_text="lpnode/tiny-text-to-image")
    # The page polls every 3 s; the pool sees the exit at once and restarts the warm runner.
    sync_api.expect(model_row).to_contain_text("exited unexpectedly", timeout=30_000)
    sync_api.expect(model_row.locator("td").nth(6)).to_have_text("1")  # restarts
    deadline = time.monotonic() + 120  # leave the shared stack serving again for the next tests
    while time.monotonic() < deadline:
        fresh = [r for m in orchestrator_status(stack) if m["pipeline"] == "text-to-image" for r in m["runners"]]
        if fresh and fresh[0]["state"] == "IDLE" and fresh[0]["pid"] != victim["pid"]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the text-to-image runner did not come back")
    row = page.locator("section[aria-label='runners'] tbody tr", has_text="text-to-image")
    sync_api.expect(row).to_contain_text(str(fresh[0]["pid"]), timeout=15_000)
    assert requests.post(f"{stack.base_url}/text-to-image", json=T2I, timeout=120).status_code == 200
    assert browser.problems == []


def test_node_page_and_lpnode_status_show_runner_apps(
    models_dir: Path, tmp_path: Path, browser: Browser, shots: Path
) -> None:
    """An orchestrator hosting runner apps: the node page and `lpnode status` list them; the runner's own URL
    only on the admin API's view."""
    secret = "dashboard-apps-secret"
    node = OrchestratorProcess("", models_dir, tmp_path / "orch", "--orch-secret", secret, "-useLiveRunners")
    try:
        node.wait_ready(timeout=60)
        heartbeat = {"runner_url": "http://127.0.0.1:9/private", "app": "acme/echo", "mode": "single-shot"}
        heartbeat |= {"capacity": 2, "version": "1.2.3"}
        registered = node.post("/runners/heartbeat", json=heartbeat, headers={"Authorization": secret}, timeout=10)
        assert registered.status_code == 200, registered.text

        page = browser.page()
        page.goto(f"{node.base_url}/dashboard")  # the public page: no runner URL
        row = page.locator("section[aria-label='runner apps'] tbody tr", has_text="acme/echo")
        for text in ("single-shot", "ready", "0 / 2", "dynamic", "1.2.3"):
            sync_api.expect(row).to_contain_text(text)
        assert "127.0.0.1:9" not in page.locator("section[aria-label='runner apps']").inner_text()
        page.goto(f"{node.admin_url}/dashboard")  # the operator's page
        row = page.locator("section[aria-label='runner apps'] tbody tr", has_text="acme/echo")
        sync_api.expect(row).to_contain_text("http://127.0.0.1:9/private")
        sync_api.expect(row).to_contain_text(registered.json()["runner_id"])
        page.screenshot(path=str(shots / "dashboard-node-runner-apps.png"))

        shown = run_cli("status", "--orchestrator", node.admin_url, timeout=60)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        table = shown.stdout.split("runner apps:", 1)[1]
        line = next(line for line in table.splitlines() if "acme/echo" in line)
        assert "single-shot" in line and "ready" in line and "http://127.0.0.1:9/private" in line
        assert browser.problems == []
    finally:
        node.stop()


# --- `lpnode dashboard --from` against a go-livepeer document ------------------------------------------------

HOSTILE_MODEL = '<img src=x onerror="alert(1)">/model'


def go_livepeer_document() -> dict[str, Any]:
    """A /getNetworkCapabilities body in go-livepeer's shape (research §10), with omitempty applied."""

    def orch(n: int, warm: bool, price: int) -> dict[str, Any]:
        model = {"capacity": 1, "runnerVersion": "0.14.1"} | ({"warm": True} if warm else {})
        return {
            "address": f"0x{n:040x}",
            "local_address": f"0x{n:040x}",
            "orch_uri": f"https://orchestrator-{n}.example:8935",
            "capabilities": {
                "bitstring": [0, 0],
                "capacities": {"27": 1},
                "version": "0.8.9",
                "constraints": {"PerCapability": {"27": {"models": {"ByteDance/SDXL-Lightning": model}}}},
            },
            "price_info": {"pricePerUnit": 1, "pixelsPerUnit": 1},
            "capabilities_prices": [
                {"pricePerUnit": price, "pixelsPerUnit": 1, "capability": 27, "constraint": "ByteDance/SDXL-Lightning"}
            ],
            "hardware": [
                {"pipeline": "text-to-image", "model_id": "ByteDance/SDXL-Lightning",
                 "gpu_info": {"0": {"id": "GPU-x", "name": "NVIDIA GeForce RTX 4090", "major": 8, "minor": 9,
                                    "memory_free": 1, "memory_total": 2}}}
            ],
        }  # fmt: skip

    llm = orch(3, True, 50)
    llm["capabilities"]["constraints"]["PerCapability"] = {
        "33": {"models": {"meta-llama/Meta-Llama-3.1-8B-Instruct": {"warm": True, "capacity": 4, "capacityInUse": 2}}},
        "35": {"models": {"comfyui": {"warm": True, "capacity": 1, "capacityInUse": 1}}},
        "28": {"models": {HOSTILE_MODEL: {"capacity": 1}}},
    }
    llm["capabilities_prices"] = [{"pricePerUnit": 50, "pixelsPerUnit": 1, "capability": 33, "constraint": ""}]
    llm["hardware"] = None
    return {
        "capabilities_names": {"27": "Text to image", "28": "Image to image", "33": "Llm", "35": "Live video to video"},
        "orchestrators": [orch(1, True, 4768371), orch(2, False, 3000000), llm],
    }


@pytest.fixture(scope="module")
def go_gateway() -> Iterator[str]:
    """A tiny HTTP server answering /getNetworkCapabilities with the recorded document."""
    body = json.dumps(go_livepeer_document()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/getNetworkCapabilities":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def standalone(go_gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*LPNODE, "dashboard", "--from", go_gateway, "--listen", f"127.0.0.1:{port}", "--interval", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/dashboard/data.json", timeout=2).json()["orchestrators"]:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


def test_dashboard_from_a_go_livepeer_gateway_renders_prices_and_escapes_names(
    standalone: str, browser: Browser, shots: Path
) -> None:
    page = browser.page()
    page.goto(f"{standalone}/dashboard")
    t2i = page.locator("section[aria-label='text-to-image'] tbody tr")
    sync_api.expect(t2i).to_have_count(2)
    sync_api.expect(t2i.first).to_contain_text("Warm")  # warm first
    sync_api.expect(t2i.first).to_contain_text("4,768,371 wei")
    sync_api.expect(t2i.first).to_contain_text("5,000 gwei")  # 4,768,371 × 1024² wei per 1024×1024 image
    sync_api.expect(t2i.first).to_contain_text("NVIDIA GeForce RTX 4090")
    sync_api.expect(t2i.nth(1)).to_contain_text("Cold")
    llm = page.locator("section[aria-label='llm'] tbody tr")
    sync_api.expect(llm).to_contain_text("2 / 4")
    sync_api.expect(llm).to_contain_text("50,000 wei")  # per 1k tokens
    sync_api.expect(page.locator("section[aria-label='live-video-to-video']")).to_contain_text("comfyui")
    # A model id from the network is shown as text, never parsed as markup.
    sync_api.expect(page.locator("section[aria-label='image-to-image'] summary")).to_contain_text(HOSTILE_MODEL)
    assert page.locator("main img").count() == 0
    sync_api.expect(page.locator("#summary")).to_contain_text("3 orchestrator(s)")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(shots / "dashboard-phone.png"))
    page.set_viewport_size(VIEWPORT)
    assert browser.problems == []
