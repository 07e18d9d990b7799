"""`lpnode status` shows wei amounts the way a person reads them: `50,000 gwei`, never `5e+04 gwei`."""

from __future__ import annotations

import io

import pytest

from lpnode.dashboard.status_command import print_gateway
from lpnode.dashboard.units import readable_wei


@pytest.mark.parametrize(
    ("wei", "shown"),
    [
        ("50000000000000", "50,000 gwei"),
        ("4768371", "4,768,371 wei"),
        ("1500000000", "1.5 gwei"),
        ("1.5", "1.5 wei"),
        (str(10**15), "0.001 ETH"),
        (str(25 * 10**17), "2.5 ETH"),
        ("123456789012345678", "0.1235 ETH"),
        ("", ""),
    ],
)
def test_wei_amounts_read_as_numbers_with_their_unit(wei: str, shown: str) -> None:
    assert readable_wei(wei) == shown


def test_the_gateway_table_prints_prices_without_exponents() -> None:
    offer = {
        "orchestrator": "https://127.0.0.1:8936", "warm": True, "capacity": 1, "in_use": 0,
        "price_wei": "47683715", "price_per_output_wei": "50000000000000", "runner_version": "0.1.0",
    }  # fmt: skip
    data = {"pipelines": [{"pipeline": "text-to-image", "models": [{"model_id": "m/x", "offers": [offer]}]}]}
    out = io.StringIO()
    print_gateway(data, out)
    row = out.getvalue().splitlines()[1]
    assert "47,683,715 wei" in row and "50,000 gwei per 1024×1024 image" in row
    assert "e+" not in out.getvalue()
