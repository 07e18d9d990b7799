"""The orchestrator's dashboard: ``GET /dashboard``, a page that polls the orchestrator's ``/status``.

``/status`` carries the runner pool's own bookkeeping (per model ``restarts``, ``failures``, ``last_error``,
``last_error_at``; per runner ``load_seconds``); :func:`annotate_models` adds each runner's ``device`` (its
GPU, ``cpu`` or ``external``), which only the orchestrator's settings know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import Route

from lpnode.dashboard.pages import asset_route, page_route


def annotate_models(models: Sequence[dict[str, Any]], slot_devices: Sequence[str]) -> list[dict[str, Any]]:
    """``/status``'s ``models`` with each runner's ``device`` added."""
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


def node_routes() -> list[Route]:
    return [page_route("/dashboard", "node.html"), asset_route()]
