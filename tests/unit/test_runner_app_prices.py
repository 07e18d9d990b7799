"""Runner-app prices, metering and the remote signer client's flag parsing, in-process."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from lpnode.errors import ConfigError
from lpnode.gateway.remote_signer import signer_headers, signer_url
from lpnode.orchestrator.runner_apps.adverts import PriceInfo
from lpnode.orchestrator.runner_apps.metering import Meter, Metered
from lpnode.orchestrator.runner_apps.payments import convert
from lpnode.payments.balances import Balances

WEI_PER_USD = Fraction(10**18, 2000)  # 2,000 USD an ETH


def test_usd_prices_become_whole_wei_per_billing_unit() -> None:
    hour = convert(PriceInfo(Decimal(10), "usd", "hour"), WEI_PER_USD)
    assert (hour.wei, hour.unit) == (1_388_888_888_888, "seconds")  # go-livepeer's worked example
    pixels = convert(PriceInfo(Decimal(10), "usd", "720p"), WEI_PER_USD)
    assert (pixels.wei, pixels.unit) == (5 * 10**15 // 99_532_800_000, "720p-pixel-seconds")
    fixed = convert(PriceInfo(Decimal("0.001"), "usd", "fixed"), WEI_PER_USD)
    assert (fixed.wei, fixed.unit) == (5 * 10**11, "fixed")
    assert fixed.to_json() == {"price": 5 * 10**11, "currency": "wei", "unit": "fixed"}
    with pytest.raises(ValueError, match="at least one wei"):
        convert(PriceInfo(Decimal("1e-20"), "usd", "hour"), WEI_PER_USD)


def test_a_meter_debits_elapsed_units_with_the_fraction_carried_then_stops_short() -> None:
    now = [0.0]
    balances = Balances()
    sender = bytes(20)
    balances.credit(sender, "m", Fraction(25))
    shorts: list[str] = []
    meter = Meter(balances, Metered(sender, "m", 1, Fraction(10)), 1.0, lambda: True, shorts.append,
                  clock=lambda: now[0])  # fmt: skip
    now[0] = 1.5
    assert meter.tick() and balances.balance(sender, "m") == 15  # 1 unit; half a unit carried
    now[0] = 2.0
    assert meter.tick() and balances.balance(sender, "m") == 5  # the carried half makes a unit
    now[0] = 3.0
    assert not meter.tick()
    assert shorts == ["insufficient balance, mid=m, fee=10, balance=5"]
    assert balances.balance(sender, "m") == 5 and meter.debited == 20


def test_signer_url_and_headers_read_like_go_livepeer() -> None:
    assert signer_url("http://127.0.0.1:7936/ignored/path") == "http://127.0.0.1:7936"
    assert signer_url("signer:7936") == "https://signer:7936"
    with pytest.raises(ConfigError, match="Invalid remote signer URL"):
        signer_url("http://")
    assert signer_headers(" Authorization: Bearer x:y , :dropped,X-Id:7") == {
        "Authorization": "Bearer x:y",
        "X-Id": "7",
    }
