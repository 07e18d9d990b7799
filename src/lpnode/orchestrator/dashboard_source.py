"""The orchestrator's side of its node page: the node view (``GET /status``) with what only the
orchestrator knows added, in two versions.

The node page (:mod:`lpnode.dashboard.node_pages`) polls ``/status``; the runner pool's snapshot carries its
own bookkeeping (per model ``restarts``, ``failures``, ``last_error``, ``last_error_at``; per runner
``load_seconds``), and :func:`annotate_models` adds each runner's ``device`` (its GPU, ``cpu`` or
``external``), which only the orchestrator's settings know.

The admin API (``--cli-addr``) serves the whole view. The public port serves :func:`public_status`: the same
document, field names unchanged, without what tells an outsider about the machine or lets them reach a
stream (:data:`ADMIN_ONLY`): runner PIDs, log paths and internal URLs, BYOC containers' URLs, remote workers'
addresses, live streams' ids, and runner apps' private URLs and IDs
(``runner_apps``). On chain, ``payments`` (wallet address, chain, tickets and earnings) is public
without the senders' balances, the chain's URL and recent redemptions (:data:`PAYMENTS_ADMIN_ONLY`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ADMIN_ONLY: Mapping[str, frozenset[str]] = {
    "runners": frozenset({"pid", "log_path", "url"}),
    "byoc": frozenset({"url"}),
    "workers": frozenset({"address"}),
    "live": frozenset({"manifest_id", "stream_id", "gateway_request_id"}),
    "runner_apps": frozenset({"runner_url", "runner_id", "route", "label"}),
}
"""Per list of the node view, the fields served on the admin API only."""
PAYMENTS_ADMIN_ONLY = frozenset({"balances", "chain_url", "refused"})
"""Fields of the ``payments`` view served on the admin API only."""


def public_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The public ``/status``: ``status`` without the :data:`ADMIN_ONLY` fields."""

    def strip(items: Any, hidden: frozenset[str]) -> Any:
        if not isinstance(items, list):
            return items
        return [{k: v for k, v in i.items() if k not in hidden} if isinstance(i, dict) else i for i in items]

    models = [{**m, "runners": strip(m.get("runners", []), ADMIN_ONLY["runners"])} for m in status.get("models", [])]
    lists = {
        key: strip(status[key], ADMIN_ONLY[key]) for key in ("byoc", "workers", "live", "runner_apps") if key in status
    }
    payments = status.get("payments")
    if isinstance(payments, dict):
        tickets = {k: v for k, v in payments.get("tickets", {}).items() if k != "recent"}
        lists["payments"] = {k: v for k, v in payments.items() if k not in PAYMENTS_ADMIN_ONLY} | {"tickets": tickets}
    return {**status, "models": models, **lists}


def annotate_models(models: Sequence[dict[str, Any]], slot_devices: Sequence[str]) -> list[dict[str, Any]]:
    """``/status``'s ``models`` with each runner's ``device`` added: ``gpu <id>`` for a slot with a device,
    ``cpu`` for another slot, ``external`` for a runner at a URL."""
    annotated = []
    for model in models:
        runners = []
        for runner in model.get("runners", ()):
            slot = runner.get("slot")
            device = "external" if runner.get("external") else "cpu" if isinstance(slot, int) else ""
            if isinstance(slot, int) and slot < len(slot_devices):
                device = f"gpu {slot_devices[slot]}"
            runners.append({**runner, "device": device})
        annotated.append({**model, "runners": runners})
    return annotated
