"""`lpnode up --network devchain --orchestrators 2` as a user meets it: two orchestrators registered on the dev chain
with different stakes and prices, and a gateway that finds them on chain alone (it is given no orchestrator).

Asserted from what a user sees: the banner, the gateway's admin `/status` (the pool as read from the chain),
`/getNetworkCapabilities` (both orchestrators with their prices) and jobs served by both; `up` stops cleanly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lpnode.up import DEMO_PRICES
from lpnode.up_chain import STAKE
from procs import wait_gone
from up_stack import Stack, pids_under

T2I = "lpnode/tiny-text-to-image"


@pytest.fixture(scope="module")
def two(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("up-two")
    (data / "models").symlink_to(models_dir, target_is_directory=True)
    node = Stack(data, "--network", "devchain", "--orchestrators", "2")
    try:
        node.curl = node.wait_ready()
        yield node
    finally:
        processes = pids_under(node.proc.pid)
        assert node.stop() == 0, node.log()
        assert wait_gone(processes) == [], "lpnode up left processes behind"
        assert "Traceback" not in node.log()


def test_two_orchestrators_are_registered_and_found_on_chain(two: Stack) -> None:
    urls = [two.orch_url, f"https://127.0.0.1:{two.orch_port + 1}"]
    log = two.log()
    for url in urls:
        assert re.search(rf"^  orchestrator  {re.escape(url)}", log, re.MULTILINE), log
    assert re.search(r"orchestrators 0x[0-9a-fA-F]{40} \(2000 LPT\), 0x[0-9a-fA-F]{40} \(1000 LPT\)", log), log
    pool = requests.get(two.admin_url + "/status", timeout=10).json()["chain_pool"]
    members = {m["service_uri"]: m for m in pool["orchestrators"]}
    assert set(members) == set(urls) and all(m["active"] for m in members.values())
    assert int(members[urls[0]]["stake"]) > int(members[urls[1]]["stake"]) >= STAKE  # rewards add to both
    caps = requests.get(two.admin_url + "/getNetworkCapabilities", timeout=10).json()["orchestrators"]
    prices = {
        o["orch_uri"]: p["pricePerUnit"] for o in caps for p in o["capabilities_prices"] if p.get("constraint") == T2I
    }
    assert prices == {urls[0]: DEMO_PRICES["text-to-image"], urls[1]: 2 * DEMO_PRICES["text-to-image"]}


def test_jobs_are_paid_and_served_by_both(two: Stack) -> None:
    body = {"prompt": "a lighthouse", "model_id": T2I, "width": 64, "height": 64, "num_inference_steps": 1}
    for _ in range(20):  # by stake (2:1) and chance: each has 0.62 or 0.38; one left out 1 time in 10000
        answer = requests.post(two.base_url + "/text-to-image", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
    sent = {
        o["url"]: o["tickets"]
        for o in requests.get(two.admin_url + "/status", timeout=10).json()["payments"]["orchestrators"]
    }
    assert set(sent) == {two.orch_url, f"https://127.0.0.1:{two.orch_port + 1}"} and all(sent.values()), sent
