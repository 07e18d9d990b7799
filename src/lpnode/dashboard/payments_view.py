"""Payments as ``lpnode status`` prints them: the ``payments`` block of a gateway's ``/dashboard/data.json`` and
of an orchestrator's ``/status`` (present on chain only; off-chain nothing is printed).

The gateway's block: ``network``, ``address``, ``deposit_wei``, ``reserve_wei``, ``unlocking``, ``problem``
(why it cannot pay, ``""`` when it can) and per orchestrator what was sent (``orchestrators``: ``url``,
``payments``, ``tickets``, ``ev_wei``, ``failures``); on the admin port also ``credits`` (``recipient``,
``manifest``, ``credit_wei``). The orchestrator's block (``lpnode.orchestrator.payments``): ``network``,
``address``, ``active``, ``ticket_ev``, ``tickets`` (``received``, ``won``, ``queued``, ``redeemed``, ``failed``,
``expired``, ``earned_wei``, ``queued_wei``), ``credited_wei``, ``debited_wei``, ``chain`` (rounds, blocks, gas)
and on the admin API ``balances`` per sender and ``refused`` per reason.

Amounts are wei as decimal strings (or numbers) and are shown in ETH (:func:`~lpnode.dashboard.units.eth_text`).
Every value may come from a hostile node, so control characters are replaced before printing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from lpnode.dashboard.units import eth_text, readable_wei

_CONTROL = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0))}


def clean(value: Any) -> str:
    """``value`` as one line of terminal text: ``""`` for ``None``, control characters (escape sequences,
    newlines) replaced by ``?``."""
    return "" if value is None else str(value).translate(_CONTROL)


def _dicts(items: Any) -> list[Mapping[str, Any]]:
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "?"


Table = Callable[[Sequence[str], Sequence[Sequence[Any]]], str]


def print_gateway_payments(payments: Mapping[str, Any], out: TextIO, table: Table) -> None:
    """The gateway's wallet, funds and what it sent each orchestrator; ``table`` lays out rows."""
    print(f"\npayments on chain ({clean(payments.get('network')) or '?'}): wallet {clean(payments.get('address'))}",
          file=out)  # fmt: skip
    deposit, reserve = eth_text(clean(payments.get("deposit_wei"))), eth_text(clean(payments.get("reserve_wei")))
    print(f"  deposit {deposit}, reserve {reserve}, unlocking: {_yes_no(payments.get('unlocking'))}", file=out)
    if payments.get("problem"):
        print(f"  cannot pay: {clean(payments['problem'])}", file=out)
    sent = _dicts(payments.get("orchestrators"))
    rows = [
        [clean(o.get("url")), o.get("payments", 0), o.get("tickets", 0), eth_text(clean(o.get("ev_wei", ""))),
         o.get("failures", 0)]
        for o in sent
    ]  # fmt: skip
    print(file=out)
    headers = ["ORCHESTRATOR", "PAYMENTS", "TICKETS", "EV SENT", "FAILED"]
    print(table(headers, rows) if rows else "no payment sent yet", file=out)
    credits = _dicts(payments.get("credits"))
    if credits:
        print(file=out)
        rows = [[clean(c.get("recipient")), clean(c.get("manifest")), eth_text(clean(c.get("credit_wei")))]
                for c in credits]  # fmt: skip
        print(table(["RECIPIENT", "MANIFEST", "CREDIT"], rows), file=out)


def print_orchestrator_payments(payments: Mapping[str, Any], out: TextIO, table: Table) -> None:
    """The orchestrator's wallet, tickets, earnings and (admin API) senders' balances; ``table`` lays out rows."""
    print(
        f"\npayments on chain ({clean(payments.get('network')) or '?'}): wallet {clean(payments.get('address'))}, "
        f"active: {_yes_no(payments.get('active'))}, ticket EV {eth_text(clean(payments.get('ticket_ev', '')))}",
        file=out,
    )
    chain = _mapping(payments.get("chain"))
    if chain:
        print(
            f"  round {clean(chain.get('last_initialized_round'))}, block {clean(chain.get('block'))}, "
            f"gas price {readable_wei(clean(chain.get('gas_price', '')))}"
            + (f", chain error: {clean(chain['last_error'])}" if chain.get("last_error") else ""),
            file=out,
        )
    tickets = _mapping(payments.get("tickets"))
    counts = ("received", "won", "queued", "redeemed", "failed", "expired")
    print(file=out)
    print(
        table(
            [*(c.upper() for c in counts), "EARNED", "CREDITED", "DEBITED"],
            [
                [
                    *(clean(tickets.get(c, 0)) for c in counts),
                    eth_text(clean(payments.get("earned_wei", tickets.get("earned_wei", 0)))),
                    eth_text(clean(payments.get("credited_wei", ""))),
                    eth_text(clean(payments.get("debited_wei", ""))),
                ]
            ],
        ),
        file=out,
    )
    if tickets.get("holding"):
        print(f"  redemption held: {clean(tickets['holding'])}", file=out)
    if "balances" in payments:  # the admin API's view only
        balances = _dicts(payments.get("balances"))
        rows = [
            [clean(b.get("sender")), clean(b.get("manifest")), eth_text(clean(b.get("balance"))),
             f"{readable_wei(clean(b.get('fixed_price')))}" if b.get("fixed_price") else ""]
            for b in balances
        ]  # fmt: skip
        print(file=out)
        print(table(["SENDER", "MANIFEST", "BALANCE", "PRICE/UNIT"], rows) if rows else "no sender's balance held",
              file=out)  # fmt: skip
    refused = payments.get("refused")
    if isinstance(refused, Mapping) and refused:
        print("  refused: " + ", ".join(f"{clean(k)} ×{clean(v)}" for k, v in sorted(refused.items())), file=out)
