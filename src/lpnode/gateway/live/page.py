"""The webcam page on the gateway's public port: ``GET /live``.

The page (package data in ``lpnode/gateway/live/static``) sends the browser's camera to the gateway with
WHIP, plays the processed stream back with WHEP, and sends params to ``.../update``. It is served like the
dashboard pages (:mod:`lpnode.dashboard.pages`): fixed files, no inline script, no CDN, a strict
Content-Security-Policy, so it works offline. ``GET /live/models.json`` lists the live pipelines the
gateway's orchestrators offer, for the page's pipeline picker.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lpnode.dashboard.pages import SECURITY_HEADERS, json_response
from lpnode.gateway.directory import Directory
from lpnode.gateway.key_guard import KeyGuard

LIVE_PIPELINE = "live-video-to-video"

ASSETS = {"live.js": "text/javascript; charset=utf-8", "live.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    **SECURITY_HEADERS,
    # The videos play MediaStreams (camera, WebRTC); no media is fetched from anywhere.
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"] + "; media-src 'self' mediastream: blob:",
    "Permissions-Policy": "camera=(self), microphone=(self)",
}


@cache
def _static(name: str) -> bytes:
    return resources.files("lpnode.gateway.live").joinpath("static", name).read_bytes()


class GatewayParts(Protocol):
    """What the page reads from the running gateway (:class:`lpnode.gateway.server.Gateway`)."""

    directory: Directory | None
    guard: KeyGuard | None


def offered_live_models(directory: Directory | None) -> list[str]:
    """The live pipelines (model ids of capability 35) the gateway's ready orchestrators offer."""
    if directory is None:
        return []
    return sorted(directory.models(LIVE_PIPELINE).get(LIVE_PIPELINE, set()))


def live_page_routes(gateway: GatewayParts) -> list[Route]:
    """``GET /live``, its assets and ``/live/models.json`` (which also tells the page whether API keys are on)."""

    async def page(request: Request) -> Response:
        return Response(_static("live.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            return PlainTextResponse("no such asset\n", status_code=404)
        return Response(_static(name), media_type=media_type, headers=PAGE_HEADERS)

    async def models(request: Request) -> Response:
        return json_response({"models": offered_live_models(gateway.directory), "keys": gateway.guard is not None})

    return [Route("/live", page), Route("/live/assets/{name}", asset), Route("/live/models.json", models)]
