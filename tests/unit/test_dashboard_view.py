"""The dashboard's data: a /getNetworkCapabilities document as pipelines → models → offers, prices per output,
usage in time buckets, and the events kept from the nodes' logs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.standalone import capabilities_url
from lpnode.dashboard.status_command import format_table
from lpnode.dashboard.units import price_per_output, wei_text
from lpnode.errors import ConfigError
from lpnode.gateway.dashboard_source import usage_series
from lpnode.gateway.usage import UsageLog, UsageRecord

GO_DOCUMENT = {
    "capabilities_names": {"27": "Text to image", "33": "Llm", "37": "byoc"},
    "orchestrators": [
        {
            "address": "0xAbC0000000000000000000000000000000000001",
            "local_address": "0xAbC0000000000000000000000000000000000001",
            "orch_uri": "https://o1.example:8935",
            "capabilities": {
                "version": "0.8.9",
                "constraints": {
                    "PerCapability": {
                        "27": {"models": {"ByteDance/SDXL-Lightning": {
                            "warm": True, "capacity": 2, "runnerVersion": "0.14.1", "capacityInUse": 1}}},
                        "33": {"models": {"meta-llama/Meta-Llama-3.1-8B-Instruct": {"capacity": 1}}},
                        "37": {"models": {"openai-chat-completions": {"warm": True, "capacity": 4}}},
                    }
                },
            },
            "capabilities_prices": [
                {"pricePerUnit": 4768371, "pixelsPerUnit": 1, "capability": 27,
                 "constraint": "ByteDance/SDXL-Lightning"},
                {"pricePerUnit": 3, "pixelsPerUnit": 2, "capability": 33},
            ],
            "hardware": [
                {"pipeline": "text-to-image", "model_id": "ByteDance/SDXL-Lightning",
                 "gpu_info": {"0": {"id": "GPU-1", "name": "NVIDIA GeForce RTX 4090", "major": 8, "minor": 9}}},
            ],
        },
        {"address": "", "orch_uri": "https://o2.example:8935", "capabilities": None, "hardware": "garbage"},
        "not an object",
    ],
}  # fmt: skip


def test_offers_carry_warm_capacity_prices_per_output_and_hardware() -> None:
    view = network_view(GO_DOCUMENT)
    assert view["orchestrators"] == 3
    by_name = {p["pipeline"]: p for p in view["pipelines"]}
    assert sorted(by_name) == ["byoc", "llm", "text-to-image"]
    (t2i,) = by_name["text-to-image"]["models"]
    (offer,) = t2i["offers"]
    assert (t2i["warm"], t2i["cold"]) == (1, 0)
    assert (offer["warm"], offer["capacity"], offer["in_use"]) == (True, 2, 1)
    assert offer["price_wei"] == "4768371"
    assert offer["price_per_output_wei"] == str(4768371 * 1024 * 1024)
    assert offer["runner_version"] == "0.14.1" and offer["node_version"] == "0.8.9"
    assert offer["gpus"] == ["0: NVIDIA GeForce RTX 4090"]
    (llm,) = by_name["llm"]["models"]
    # omitempty: a missing warm flag is false (cold); the capability-wide price applies to the model.
    assert llm["offers"][0]["warm"] is False and (llm["warm"], llm["cold"]) == (0, 1)
    assert llm["offers"][0]["price_wei"] == "1.5" and llm["offers"][0]["price_per_output_wei"] == "1500"


def test_a_price_over_the_gateways_cap_is_flagged() -> None:
    caps = {("text-to-image", "ByteDance/SDXL-Lightning"): Fraction(1000)}
    view = network_view(GO_DOCUMENT, max_price=lambda p, m: caps.get((p, m)))
    t2i = next(p for p in view["pipelines"] if p["pipeline"] == "text-to-image")["models"][0]
    assert t2i["max_price_wei"] == "1000" and t2i["offers"][0]["over_cap"] is True


def test_a_malformed_document_gives_an_empty_view_not_an_error() -> None:
    for document in (None, [], {"orchestrators": "x"}, {"orchestrators": [{"capabilities": {"constraints": 5}}]}):
        assert network_view(document)["pipelines"] == []


def test_price_per_output_units() -> None:
    assert price_per_output("audio-to-text", Fraction(2)) == ("120000", "audio minute")
    assert price_per_output("llm", None) == ("", "1k tokens")
    assert price_per_output("unknown", Fraction(1)) == ("", "")
    assert wei_text(Fraction(1, 3)) == "0.333333"


def test_usage_is_summed_per_bucket_key_and_pipeline(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    with UsageLog(tmp_path / "gateway.sqlite") as usage:
        for seconds_ago, key, status in ((30, "app", 200), (90, "app", 500), (100, "", 200), (7200, "app", 200)):
            usage.record(
                UsageRecord(pipeline="llm", key_name=key, units=10, price_wei="5", latency_ms=100.0, status=status,
                            time=now - seconds_ago)
            )  # fmt: skip
        series = usage_series(usage, "1h", now=now)
        with pytest.raises(ConfigError):
            usage_series(usage, "2y")
    assert len(series["buckets"]) == 60 and series["bucket_seconds"] == 60
    app = series["by_key"]["app"]
    assert sum(app["requests"]) == 2 and sum(app["errors"]) == 1 and sum(app["spend_wei"]) == 10.0
    assert sum(series["by_key"]["(no key)"]["requests"]) == 1
    totals = {t["name"]: t for t in series["totals"]["by_pipeline"]}
    # units count what was served: the failed request's 10 are not among them
    assert totals["llm"]["requests"] == 3 and totals["llm"]["units"] == 20 and totals["llm"]["latency_ms"] == 100.0


def test_dashboard_from_accepts_a_gateway_address_or_the_full_url() -> None:
    assert capabilities_url("127.0.0.1:7935") == "http://127.0.0.1:7935/getNetworkCapabilities"
    assert capabilities_url("https://gw.example/") == "https://gw.example/getNetworkCapabilities"
    assert capabilities_url("https://gw.example/custom/path") == "https://gw.example/custom/path"
    with pytest.raises(ConfigError, match="not an http"):
        capabilities_url("ftp://gw.example")


def test_status_tables_pad_columns_and_mark_empty_cells() -> None:
    text = format_table(["A", "LONGER"], [["x", ""], ["yyyy", 3]])
    assert text.splitlines() == ["A     LONGER", "x     -", "yyyy  3"]
