"""Serving the dashboard's pages and assets (package data in ``lpnode/dashboard/static``).

Pages are fixed HTML shells whose script fetches JSON and builds the DOM with ``textContent`` only, so text
from the network (orchestrator URLs, model ids, error messages) is never parsed as HTML. Every response
carries a Content-Security-Policy that allows only this origin's scripts, styles and JSON: no inline
script, no third-party fonts, CDNs or trackers, and the pages work offline.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "network.js": "text/javascript; charset=utf-8",
    "node.js": "text/javascript; charset=utf-8",
    "usage.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _static(name: str) -> bytes:
    return resources.files("lpnode.dashboard").joinpath("static", name).read_bytes()


def page(name: str, status_code: int = 200) -> Response:
    return Response(
        _static(name), status_code=status_code, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


def json_response(data: Any, status_code: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status_code, media_type="application/json", headers=SECURITY_HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        return PlainTextResponse("no such asset\n", status_code=404)
    return Response(_static(name), media_type=media_type, headers=SECURITY_HEADERS)


def page_route(path: str, name: str) -> Route:
    async def serve(request: Request) -> Response:
        return page(name)

    return Route(path, serve)


def asset_route() -> Route:
    return Route("/dashboard/assets/{name}", asset)
