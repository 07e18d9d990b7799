"""Runner apps: go-livepeer's Live Runner on an lpnode orchestrator (an app registry and reverse proxy).

Any HTTP / SSE / WebSocket / trickle app registers by heartbeat (``POST /runners/heartbeat``) or from a static
``runners.json``, and clients reach it only through orchestrator URLs (``GET /discovery``, ``/apps/...``,
public proxy URLs). The wire facts are in :mod:`lpnode.protocol.runner_apps`; the pieces here:

- :mod:`.adverts`: heartbeat bodies and ``runners.json`` entries, checked;
- :mod:`.records`, :mod:`.registry`: runners, sessions, capacity, O2R events, expiry, static health;
- :mod:`.proxy_urls`: ``-liveRunnerProxyUrl`` templates;
- :mod:`.app_proxy`: the HTTP / SSE / WebSocket reverse proxy;
- :mod:`.admission`: where a session or call is admitted (the payment seam);
- :mod:`.routes`: the public routes; :mod:`.service`: the whole feature as the orchestrator uses it.
"""

from lpnode.orchestrator.runner_apps.adverts import Advert, AdvertError, StaticEntry, parse_advert
from lpnode.orchestrator.runner_apps.proxy_urls import ProxyTemplate, parse_template
from lpnode.orchestrator.runner_apps.records import PUBLIC_HIDDEN, AppRunner, AppSession
from lpnode.orchestrator.runner_apps.registry import AppError, AppRegistry
from lpnode.orchestrator.runner_apps.service import RunnerApps, front_without_apps, not_supported

__all__ = [
    "PUBLIC_HIDDEN",
    "Advert",
    "AdvertError",
    "AppError",
    "AppRegistry",
    "AppRunner",
    "AppSession",
    "ProxyTemplate",
    "RunnerApps",
    "StaticEntry",
    "front_without_apps",
    "not_supported",
    "parse_advert",
    "parse_template",
]
