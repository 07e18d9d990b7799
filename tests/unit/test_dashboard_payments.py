"""Payments in the operators' views, from the shapes a dev-chain stack serves: `lpnode status`'s tables, the
gateway's dashboard block, the orchestrator's public `/status`, the doctor's chain checks, and BYOC prices in USD."""

from __future__ import annotations

import asyncio
import io
from fractions import Fraction
from typing import Any

import pytest
from starlette.testclient import TestClient

from lpnode.byoc.registry import CapabilityRegistry, Price, RegisteredCapability
from lpnode.dashboard.doctor_chain import check_active, check_gateway_funds, check_ticket_params
from lpnode.dashboard.gateway_pages import dashboard_routes
from lpnode.dashboard.sources import Advertised, NetworkSnapshot
from lpnode.dashboard.status_command import print_gateway, print_orchestrator
from lpnode.dashboard.units import eth_text
from lpnode.errors import BadRequestError, UnavailableError
from lpnode.gateway.dashboard_source import payments_view
from lpnode.orchestrator.dashboard_source import public_status

GATEWAY = "0xC5fEc071CEB92Ca85d7800C07b4a25357b1F46e4"
ORCH = "0x4d4a0D9Ea741370Be20aBE16cFe3D108E24080E7"
# GatewayPayments.snapshot() after three text-to-image jobs on `lpnode up --network devchain`.
GATEWAY_SNAPSHOT: dict[str, Any] = {
    "address": GATEWAY,
    "deposit_wei": "1000000000000000000",
    "reserve_wei": "1000000000000000000",
    "unlocking": False,
    "orchestrators": [
        {"url": "https://127.0.0.1:41837", "payments": 3, "tickets": 2, "ev_wei": "200000000000000", "failures": 0}
    ],
    "credits": [
        {
            "recipient": ORCH,
            "manifest": "27_lpnode/tiny-text-to-image",
            "credit_wei": "385859421810727151189631323744612895285202814928645386782604768160986822511560038489939"
            "17952/192986815395526992372618308347813179755449974442734273399095973346521882733225",
        }
    ],
}
# The orchestrator's admin /status "payments" block, same stack.
ORCH_PAYMENTS: dict[str, Any] = {
    "network": "devchain",
    "chain_url": "http://127.0.0.1:47289",
    "address": ORCH,
    "active": True,
    "ticket_ev": "100000000000000",
    "tickets": {
        "received": 2,
        "won": 0,
        "queued": 0,
        "redeemed": 0,
        "failed": 0,
        "expired": 0,
        "earned_wei": 0,
        "queued_wei": 0,
        "recent": [],
        "holding": "",
    },
    "earned_wei": "0",
    "credited_wei": "200000000000000",
    "debited_wei": "59179680276",
    "refused": {"TicketParams expired": 1},
    "balances": [
        {
            "sender": GATEWAY,
            "manifest": "27_lpnode/tiny-text-to-image",
            "balance": "199940820319723",
            "fixed_price": "4816054.71",
        }
    ],
    "chain": {
        "block": 71,
        "l1_block": 71,
        "gas_price": 1000080422,
        "current_round": 3,
        "current_round_initialized": True,
        "last_initialized_round": 3,
        "transcoder_pool_size": 1,
        "active": {ORCH: True},
        "senders_watched": 1,
        "age_seconds": 4.9,
        "last_error": "",
    },
    "price_feed": None,
}


def test_eth_amounts_read_as_eth_with_six_significant_digits() -> None:
    assert eth_text(10**18) == "1 ETH"
    assert eth_text("199940820319723") == "0.000199941 ETH"
    assert eth_text(50_000 * 10**9) == "0.00005 ETH"
    assert eth_text("0") == "0 ETH"
    assert eth_text(1234 * 10**18 + 1) == "1,234 ETH"
    assert eth_text("3/2") == "0.0000000000000000015 ETH"
    assert (eth_text(""), eth_text("n/a")) == ("", "n/a")


def test_gateway_status_shows_wallet_funds_and_tickets_sent_per_orchestrator() -> None:
    view = payments_view(GATEWAY_SNAPSHOT, network="devchain", problem="", admin=True)
    assert view["credits"][0]["credit_wei"] == "199940820319723"  # whole wei, not the exact fraction
    out = io.StringIO()
    print_gateway({"pipelines": [], "payments": view}, out)
    text = out.getvalue()
    assert f"payments on chain (devchain): wallet {GATEWAY}" in text
    assert "deposit 1 ETH, reserve 1 ETH, unlocking: no" in text
    row = next(line for line in text.splitlines() if line.startswith("https://127.0.0.1:41837"))
    assert row.split() == ["https://127.0.0.1:41837", "3", "2", "0.0002", "ETH", "0"]
    assert "0.000199941 ETH" in text and "e+" not in text


def test_the_public_gateway_block_has_funds_and_tickets_but_no_credits() -> None:
    view = payments_view(GATEWAY_SNAPSHOT, network="devchain", problem="the deposit is empty", admin=False)
    assert "credits" not in view and view["problem"] == "the deposit is empty"
    assert view["orchestrators"][0]["ev_wei"] == "200000000000000"


def test_orchestrator_status_shows_tickets_earnings_and_admin_only_balances() -> None:
    out = io.StringIO()
    print_orchestrator({"models": [], "payments": ORCH_PAYMENTS}, out)
    text = out.getvalue()
    assert f"wallet {ORCH}, active: yes, ticket EV 0.0001 ETH" in text
    assert "round 3, block 71, gas price 1 gwei" in text
    counts = text.splitlines()[
        text.splitlines().index(next(x for x in text.splitlines() if x.startswith("RECEIVED"))) + 1
    ]
    assert counts.split()[:6] == ["2", "0", "0", "0", "0", "0"] and "0.0002 ETH" in counts
    assert "0.000199941 ETH" in text and "4,816,055 wei" in text  # the balance, and the price pinned
    assert "refused: TicketParams expired ×1" in text

    public = public_status({"models": [], "payments": ORCH_PAYMENTS})["payments"]
    assert "balances" not in public and "chain_url" not in public and "refused" not in public
    assert "recent" not in public["tickets"] and public["tickets"]["received"] == 2
    out = io.StringIO()
    print_orchestrator({"models": [], "payments": public}, out)
    assert "SENDER" not in out.getvalue() and GATEWAY not in out.getvalue()


def test_off_chain_views_print_no_payments() -> None:
    out = io.StringIO()
    print_orchestrator({"models": []}, out)
    print_gateway({"pipelines": []}, out)
    assert "payments" not in out.getvalue()


def test_hostile_values_cannot_write_escape_sequences_to_the_terminal() -> None:
    hostile = {**GATEWAY_SNAPSHOT, "orchestrators": [{"url": "https://evil\x1b[2J\nfake line", "tickets": 1}]}
    out = io.StringIO()
    print_gateway({"pipelines": [], "payments": payments_view(hostile, network="x\x1b]0;t\x07", problem="",
                                                               admin=False)}, out)  # fmt: skip
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "https://evil?[2J?fake line" in out.getvalue()


class _Source:
    """A gateway's dashboard source with no orchestrators, on chain or not."""

    keys_required = False

    def __init__(self, payments: dict[str, Any] | None) -> None:
        self._payments = payments
        self.asked: list[bool] = []

    def network(self) -> NetworkSnapshot:
        return NetworkSnapshot(document={"orchestrators": []})

    def usage_buckets(self, since: float, step: float) -> list[Any]:
        return []

    async def payments(self, *, admin: bool) -> dict[str, Any] | None:
        self.asked.append(admin)
        return self._payments


def test_dashboard_json_has_payments_on_chain_only() -> None:
    from starlette.applications import Starlette

    on_chain = _Source(payments_view(GATEWAY_SNAPSHOT, network="devchain", problem="", admin=False))
    with TestClient(Starlette(routes=dashboard_routes(on_chain, admin=False))) as client:
        data = client.get("/dashboard/data.json").json()
    assert data["payments"]["address"] == GATEWAY and on_chain.asked == [False]
    with TestClient(Starlette(routes=dashboard_routes(_Source(None), admin=True))) as client:
        assert "payments" not in client.get("/dashboard/data.json").json()


def _reporter() -> tuple[list[tuple[str, str, str, str]], Any]:
    seen: list[tuple[str, str, str, str]] = []
    return seen, lambda *args: seen.append(args)


def test_doctor_chain_checks_pass_on_a_funded_stack_and_name_the_fix_otherwise() -> None:
    seen, report = _reporter()
    check_active(report, ORCH_PAYMENTS)
    params = {"recipient": ORCH, "face_value_wei": str(10**15), "win_prob": "0.1", "expiration_block": "423",
              "model": "text-to-image lpnode/tiny-text-to-image"}  # fmt: skip
    check_ticket_params(report, Advertised({}, 0, params, True, signed_by=GATEWAY), ORCH_PAYMENTS)
    check_gateway_funds(report, payments_view(GATEWAY_SNAPSHOT, network="devchain", problem="", admin=False))
    assert [s[1] for s in seen] == ["PASS", "PASS", "PASS"], seen
    assert "face value 0.001 ETH" in seen[1][2] and "paying text-to-image" in seen[1][2]

    seen, report = _reporter()
    check_active(report, {**ORCH_PAYMENTS, "active": False})
    check_ticket_params(report, Advertised({}, 0, None, True, signed_by=GATEWAY), ORCH_PAYMENTS)
    check_ticket_params(report, Advertised({}, 0, {**params, "recipient": GATEWAY}, True), ORCH_PAYMENTS)
    empty = payments_view({**GATEWAY_SNAPSHOT, "reserve_wei": "0"}, network="devchain", problem="", admin=False)
    check_gateway_funds(report, empty)
    check_gateway_funds(report, None)
    assert [s[1] for s in seen] == ["FAIL"] * 5, seen
    assert "the reserve is empty" in seen[3][2] and "lpnode deposit" in seen[3][3]
    assert "the gateway is off-chain" in seen[4][2]


class _Target:
    kind, url, capacity, in_use, healthy, last_error = "container", "http://127.0.0.1:1", 1, 0, True, ""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def test_byoc_prices_in_usd_are_refused_off_chain_and_converted_with_the_feed_on_chain() -> None:
    with pytest.raises(BadRequestError, match=r"currency 'USD' needs an on-chain price feed.*-priceFeedAddr"):
        Price(3, 100, "USD").check()
    with pytest.raises(BadRequestError, match="currency code"):
        Price(1, 1, "US$").check(lambda c: Fraction(1))

    def no_feed(currency: str) -> Fraction:
        raise RuntimeError(f"no price feed for {currency}; give -priceFeedAddr")

    with pytest.raises(BadRequestError, match="cannot be converted to wei: no price feed for USD"):
        Price(3, 100, "USD").check(no_feed)
    wei_per_usd = Fraction(10**18, 2500)  # 1 ETH = 2500 USD
    price = Price(3, 100, "USD").check(lambda currency: wei_per_usd)  # 0.03 USD a second
    assert price.wei_per_second == Fraction(3, 100) * wei_per_usd == 12 * 10**12

    async def registered(registry: CapabilityRegistry, price: Price) -> list[Any]:
        await registry.register(RegisteredCapability("priced", "", price, _Target()))  # type: ignore[arg-type]
        return registry.advertised()

    (info,) = asyncio.run(registered(CapabilityRegistry(wei_per=lambda currency: wei_per_usd), Price(3, 100, "USD")))
    assert Fraction(info.pricePerUnit, info.pixelsPerUnit) == 12 * 10**12
    off_chain = CapabilityRegistry()
    assert asyncio.run(registered(off_chain, Price(3, 100, "USD"))) == []  # a custom pipeline priced in USD
    capability = off_chain.get("priced")
    assert capability is not None
    with pytest.raises(UnavailableError, match="priced in USD"):
        _ = capability.price.wei_per_second  # refused, never served free
