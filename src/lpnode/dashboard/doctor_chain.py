"""``lpnode doctor``'s checks on chain, run when the orchestrator's ``/status`` has a ``payments`` block.

- the orchestrator is active on chain (an inactive one is refused by gateways' tickets, go-livepeer's
  ``orchestrator is inactive``);
- it gave the gateway's wallet ticket params in ``GetOrchestrator``, naming itself as the recipient;
- the gateway pays on chain too, and its deposit and reserve are non-empty and not unlocking.

Each check reports through ``report(name, outcome, detail, fix)`` (:meth:`lpnode.dashboard.doctor.Doctor.report`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from lpnode.dashboard.sources import Advertised
from lpnode.dashboard.units import eth_text

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
Report = Callable[[str, str, str, str], object]
NO_WALLET = (
    "the orchestrator is on chain and answers only a GetOrchestrator signed by a gateway's wallet, and no wallet "
    "was given"
)
WALLET_FIX = (
    "give the gateway's wallet: --eth-keystore-path PATH --eth-password FILE (and --eth-acct-addr when the keystore "
    "holds several); `lpnode up --network devchain`'s is found in --data-dir"
)
FUND_FIX = "fund it with `lpnode deposit --deposit WEI --reserve WEI` (run by the gateway's operator)"


def _wei(value: Any) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def check_active(report: Report, payments: Mapping[str, Any]) -> None:
    """The orchestrator's ``active`` flag (its address in the current round's active set)."""
    name = "orchestrator active on chain"
    where = f"{payments.get('address', '?')} on {payments.get('network', '?')}"
    if payments.get("active") is True:
        report(name, PASS, f"{where} is in the active set", "")
    else:
        report(
            name, FAIL, f"{where} is not in the active set: gateways' tickets are refused",
            "bond LPT to the address and activate it (set a reward cut and fee share, register the service "
            "address); it becomes active from the next round",
        )  # fmt: skip


def check_ticket_params(report: Report, info: Advertised, payments: Mapping[str, Any]) -> None:
    """The signed ``GetOrchestrator`` answer carries ticket params whose recipient is the orchestrator."""
    name = "ticket params received"
    params = info.ticket_params
    if params is None:
        report(
            name, FAIL, f"GetOrchestrator signed by {info.signed_by} came back without ticket params",
            "see the orchestrator's log: it gives none to a sender whose reserve is empty",
        )  # fmt: skip
        return
    recipient = params.get("recipient", "")
    if str(payments.get("address", "")).lower() not in ("", recipient.lower()):
        report(
            name, FAIL, f"the recipient {recipient} is not the orchestrator's wallet {payments.get('address')}",
            "the service address may reach another node: check -serviceAddr",
        )  # fmt: skip
        return
    report(
        name, PASS,
        f"for {info.signed_by}{' paying ' + params['model'] if params.get('model') else ''}: recipient {recipient}, "
        f"face value {eth_text(params.get('face_value_wei', ''))}, "
        f"win probability {params.get('win_prob')}, expires at block {params.get('expiration_block')}"
        + ("" if info.price_info else "; no price_info"),
        "",
    )  # fmt: skip


def check_gateway_funds(report: Report, gateway_payments: Any) -> None:
    """The gateway pays on chain, from a deposit and reserve that are not empty nor unlocking."""
    name = "gateway deposit and reserve"
    if not isinstance(gateway_payments, Mapping):
        report(
            name, FAIL, "the gateway is off-chain, but the orchestrator is on chain and refuses unpaid jobs",
            "start the gateway on the same chain (-network, -ethUrl, -ethController and its wallet)",
        )  # fmt: skip
        return
    deposit, reserve = _wei(gateway_payments.get("deposit_wei")), _wei(gateway_payments.get("reserve_wei"))
    funds = f"{gateway_payments.get('address', '?')}: deposit {eth_text(deposit)}, reserve {eth_text(reserve)}"
    if deposit <= 0 or reserve <= 0:
        empty = " and ".join(n for n, v in (("deposit", deposit), ("reserve", reserve)) if v <= 0)
        report(name, FAIL, f"{funds}; the {empty} {'are' if ' and ' in empty else 'is'} empty", FUND_FIX)
    elif gateway_payments.get("unlocking") or gateway_payments.get("problem"):
        problem = gateway_payments.get("problem") or "the deposit is unlocking for withdrawal"
        report(name, FAIL, f"{funds}; {problem}", "run `lpnode deposit cancel-unlock` to pay again")
    else:
        report(name, PASS, funds, "")
