"""The gateway's side of ``lpnode doctor``: what an orchestrator tells a gateway, asked the way a gateway asks.

:func:`advertised` implements :data:`lpnode.dashboard.sources.Advertisement` with the gateway's own
``GetOrchestrator`` client (gRPC, the orchestrator's certificate pinned), so the doctor sees exactly what a
gateway dialling the service address would see.
"""

from __future__ import annotations

import asyncio

from lpnode.dashboard.fetch import Unreachable
from lpnode.dashboard.sources import Advertised
from lpnode.gateway.orch_client import OrchestratorClient, OrchestratorUnreachable
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo

TIMEOUT = 10.0


def advertised(service_url: str) -> Advertised:
    """Blocking: the models (with their warm flags) and hardware entries ``service_url`` advertises;
    ``Unreachable`` when it does not answer gRPC."""

    async def call() -> OrchestratorInfo:
        client = OrchestratorClient()
        try:
            return await client.get_info(service_url, timeout=TIMEOUT)
        finally:
            await client.close()

    try:
        info = asyncio.run(call())
    except OrchestratorUnreachable as exc:
        raise Unreachable(str(exc)) from None
    models = {
        (int(cap), str(model_id)): bool(facts.warm)
        for cap, constraint in info.capabilities.constraints.PerCapability.items()
        for model_id, facts in constraint.models.items()
    }
    return Advertised(models, len(info.hardware))
