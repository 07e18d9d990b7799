"""``GetOrchestrator`` over gRPC, for discovery: one channel per orchestrator, kept and reused.

Orchestrators serve self-signed certificates; the first call pins the one presented
(:mod:`lpnode.protocol.tls_pinning`), as Livepeer's gateways trust orchestrators. ``http://`` addresses use h2c.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]

from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.tls_pinning import grpc_target, pinned_channel

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"
TIMEOUT_SECONDS = 5.0


class InfoClient:
    """Calls ``GetOrchestrator``; errors are plain exceptions with one line (the pool logs them)."""

    def __init__(self) -> None:
        self._channels: dict[str, tuple[Any, Any]] = {}

    async def get_info(self, url: str, request: OrchestratorRequest) -> OrchestratorInfo:
        channel, call = await self._channel(url)
        try:
            info: OrchestratorInfo = await call(request, timeout=TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            self._channels.pop(url, None)
            await channel.close()
            raise RuntimeError(f"{url}: {exc.code().name}: {exc.details() or 'no details'}") from None
        return info

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _channel(self, url: str) -> tuple[Any, Any]:
        held = self._channels.get(url)
        if held is not None:
            return held
        parts = urlsplit(url if "://" in url else "https://" + url)
        if not parts.hostname or not parts.port:
            raise RuntimeError(f"{url}: not an address with a host and a port")
        if parts.scheme == "http":
            channel = grpc.aio.insecure_channel(grpc_target(parts.hostname, parts.port))
        else:
            channel, _ = await pinned_channel(parts.hostname, parts.port)
        call = channel.unary_unary(
            GET_ORCHESTRATOR,
            request_serializer=OrchestratorRequest.SerializeToString,
            response_deserializer=OrchestratorInfo.FromString,
        )
        self._channels[url] = (channel, call)
        return channel, call
