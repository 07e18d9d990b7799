"""``lpnode doctor``'s checks of an orchestrator's own place on chain, from the ``operator`` block of its
``/status`` (``payments.operator``, written by the orchestrator's on-chain duties):

- registered: its LPT is bonded to itself (else, why it is not and the commands that fix it);
- service URI: one is registered on chain (none is a SKIP: gateways given ``-orchAddr`` still reach the node), it
  is the node's ``-serviceAddr``, and the ``GetOrchestrator`` the doctor made to that address from this machine
  answered (what a gateway dials);
- reward: called in the current round while the orchestrator is active.

Each check reports through ``report(name, outcome, detail, fix)`` (:meth:`lpnode.dashboard.doctor.Doctor.report`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
Report = Callable[[str, str, str, str], object]
CHAIN_FLAGS = "with the orchestrator's chain and keystore flags"


def check_registered(report: Report, operator: Mapping[str, Any]) -> None:
    """The orchestrator's LPT is bonded to itself; the reason it is not active rides along either way."""
    name = "orchestrator registered on chain"
    if "registered" not in operator:
        report(
            name, SKIP, f"not read from the chain yet: {operator.get('problem') or 'try again in a few seconds'}", ""
        )
        return
    why = operator.get("why_not_active")
    if operator.get("registered"):
        report(name, PASS, f"stake {_lpt(operator.get('stake_wei'))}{'; ' + str(why) if why else ''}", "")
    else:
        report(
            name, FAIL, str(why or "its LPT is not bonded to itself"),
            f"`lpnode chain bond AMOUNT` then `lpnode chain transcoder --reward-cut P --fee-share P` ({CHAIN_FLAGS})",
        )  # fmt: skip


def check_service_uri(report: Report, operator: Mapping[str, Any], answered: bool | None) -> None:
    """A service URI is on chain and is the address the doctor reached with ``GetOrchestrator`` (``answered``:
    True it answered, False it did not, None not tried)."""
    name = "service URI on chain reachable"
    uri, service = str(operator.get("service_uri") or ""), str(operator.get("service_addr") or "")
    if not uri:  # gateways given its address (-orchAddr) still reach it: not a failure of the loop tested here
        report(
            name, SKIP, "no service URI is registered: gateways that discover orchestrators on chain cannot find "
            "it (gateways given -orchAddr still can)",
            f"lpnode chain set-service-uri {service or 'https://HOST:PORT'} ({CHAIN_FLAGS})",
        )  # fmt: skip
    elif not operator.get("service_uri_matches"):
        report(
            name, FAIL, f"{uri} is on chain but the node serves {service}",
            f"lpnode chain set-service-uri {service} ({CHAIN_FLAGS})",
        )  # fmt: skip
    elif answered is None:
        report(name, SKIP, f"{uri} is on chain; GetOrchestrator was not tried (see above)", "")
    elif answered:
        report(
            name, PASS,
            f"{uri} answered GetOrchestrator from this machine (reachability from other networks depends on the "
            "firewall and NAT in between, which a check from here cannot see)",
            "",
        )  # fmt: skip
    else:
        report(
            name, FAIL, f"{uri} is on chain but did not answer GetOrchestrator from this machine",
            "open the port in the firewall (and forward it through NAT) or register a reachable URI",
        )  # fmt: skip


def check_reward(report: Report, operator: Mapping[str, Any]) -> None:
    """An active orchestrator called reward in the current round."""
    name = "reward called this round"
    if not operator.get("active"):
        report(name, SKIP, "only orchestrators in the active set call reward", "")
        return
    last = operator.get("last_reward_round") or "never"
    if operator.get("reward_called_this_round"):
        report(name, PASS, f"round {operator.get('round')}", "")
    elif not operator.get("reward_enabled"):
        report(
            name, FAIL, f"-reward=false, and reward was last called in round {last}: this round's LPT is not minted",
            f"lpnode chain reward ({CHAIN_FLAGS}), or restart the orchestrator without -reward=false",
        )  # fmt: skip
    else:
        problem = operator.get("problem") or "the orchestrator calls it within a few seconds of the round starting"
        report(
            name, FAIL, f"not yet in round {operator.get('round')} (last: {last}): {problem}",
            f"see the orchestrator's log; `lpnode chain reward` ({CHAIN_FLAGS}) calls it by hand",
        )  # fmt: skip


def _lpt(wei: Any) -> str:
    try:
        amount = int(str(wei))
    except ValueError:
        return "?"
    text = f"{amount / 10**18:.6f}".rstrip("0").rstrip(".")
    return f"{text} LPT"
