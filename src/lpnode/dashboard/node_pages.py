"""The orchestrator's dashboard: ``GET /dashboard``, a page that polls the orchestrator's node view,
``/status`` (:data:`~lpnode.dashboard.sources.NODE_STATUS_PATH`), which the orchestrator serves itself
(``lpnode.orchestrator.dashboard_source`` adds each runner's device to it).
"""

from __future__ import annotations

from starlette.routing import Route

from lpnode.dashboard.pages import asset_route, page_route


def node_routes() -> list[Route]:
    """``GET /dashboard`` (the node page) and its assets."""
    return [page_route("/dashboard", "node.html"), asset_route()]
