"""The gateway's admin API (``--cli-addr``), with go-livepeer's routes and shapes:

- ``GET /getNetworkCapabilities``: every known orchestrator's capabilities, prices and hardware (§10),
  filled in off-chain mode too (go-livepeer only fills it on-chain).
- ``GET /getAISessionPoolsInfo``: per ``<capability>_<model>``, the warm and cold orchestrators with their
  latency score and jobs in flight, and the suspended ones.
- ``POST /setMaxPriceForCapability``: form fields ``maxPricePerUnit``, ``pixelsPerUnit``, ``currency``,
  ``pipeline``, ``modelID`` (``default`` for every model of the pipeline); takes effect at once.
- ``GET /usage?since=1h&by=key,pipeline``: the metering summary (lpnode's own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from fractions import Fraction

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from lpnode.errors import ConfigError
from lpnode.gateway.directory import Directory
from lpnode.gateway.forward import Forwarder
from lpnode.gateway.keys_command import parse_groups, parse_since
from lpnode.gateway.network_caps import (
    PooledOrchestrator,
    PoolSide,
    PoolSnapshot,
    go_json,
    network_capabilities,
    session_pools_info,
)
from lpnode.gateway.selection import Stats
from lpnode.gateway.usage import UsageLog
from lpnode.protocol.capabilities import capability_for_pipeline, pipeline_for_capability


class AdminRoutes:
    def __init__(self, directory: Directory, stats: Stats, forwarder: Forwarder, usage: UsageLog) -> None:
        self.directory = directory
        self.stats = stats
        self.forwarder = forwarder
        self.usage = usage

    async def network_capabilities(self, request: Request) -> Response:
        known = [(o.url, o.info) for o in self.directory.known() if o.info is not None]
        return Response(go_json(network_capabilities(known)), media_type="application/json")

    async def session_pools(self, request: Request) -> Response:
        pools: dict[str, PoolSnapshot] = {}
        suspended = {o.url: o.failures for o in self.directory.known() if o.suspended}
        for pipeline, models in self.directory.models().items():
            cap = int(capability_for_pipeline(pipeline))
            for model_id in sorted(models):
                sides: dict[bool, list[PooledOrchestrator]] = {True: [], False: []}
                for offer in self.directory.offers(pipeline, model_id):
                    measure = self.stats.of(offer)
                    sides[offer.warm].append(PooledOrchestrator(offer.url, measure.latency or 0.0, measure.in_flight))
                pools[f"{cap}_{model_id}"] = PoolSnapshot(
                    warm=PoolSide(sides[True], sum(o.in_flight > 0 for o in sides[True])),
                    cold=PoolSide(sides[False], sum(o.in_flight > 0 for o in sides[False])),
                    last_refresh=self.directory.last_refresh,
                    suspended=suspended,
                    current_count=len(suspended),
                )
        return Response(go_json(session_pools_info(pools)), media_type="application/json")

    async def set_max_price(self, request: Request) -> Response:
        form = await request.form()
        values = {
            k: str(form.get(k) or "").strip()
            for k in ("maxPricePerUnit", "pixelsPerUnit", "currency", "pipeline", "modelID")
        }
        missing = [k for k, v in values.items() if not v]
        if missing:
            return PlainTextResponse(f"missing form fields: {', '.join(missing)}\n", status_code=400)
        try:
            pipeline_for_capability(capability_for_pipeline(values["pipeline"]))
            currency = values["currency"].lower()
            caps = self.forwarder.caps
            if currency == "usd" and caps.wei_per_usd is None:
                raise ConfigError("currency USD needs the on-chain ETH/USD price feed (-priceFeedAddr); use wei or eth")
            if currency not in ("wei", "eth", "usd"):
                raise ConfigError(f"currency {values['currency']!r} is not wei, eth or USD")
            price = Fraction(values["maxPricePerUnit"]) * (10**18 if currency == "eth" else 1)
            price /= Fraction(values["pixelsPerUnit"])
        except (ConfigError, ValueError, ZeroDivisionError) as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        key = (values["pipeline"], values["modelID"])
        usd = caps.usd | {key} if currency == "usd" else caps.usd - {key}
        self.forwarder.caps = dataclasses.replace(caps, per_model={**caps.per_model, key: price}, usd=usd)
        unit = "USD" if currency == "usd" else "wei"
        return PlainTextResponse(
            f"max price for {values['pipeline']} {values['modelID']} set to {price} {unit} per unit\n"
        )

    async def usage_summary(self, request: Request) -> Response:
        try:
            since = parse_since(request.query_params["since"]) if "since" in request.query_params else None
            groups = parse_groups(request.query_params.get("by", "key,pipeline,model"))
        except ConfigError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        rows = await asyncio.to_thread(self.usage.summary, since=since, group_by=groups)
        return JSONResponse({"since": since, "until": time.time(), "rows": rows})
