"""The orchestrator's side of its node page: the node view (``GET /status``) with what only the
orchestrator knows added.

The node page (:mod:`lpnode.dashboard.node_pages`) polls ``/status``; the runner pool's snapshot carries its
own bookkeeping (per model ``restarts``, ``failures``, ``last_error``, ``last_error_at``; per runner
``load_seconds``), and :func:`annotate_models` adds each runner's ``device`` (its GPU, ``cpu`` or
``external``), which only the orchestrator's settings know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
