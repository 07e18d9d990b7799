"""Calling an orchestrator's ``GetOrchestrator`` over gRPC, as a gateway does.

Orchestrators serve TLS with self-signed certificates and gateways do not check them against a CA
(go-livepeer skips verification), so the first call to an orchestrator pins the certificate it presents
(:mod:`lpnode.protocol.tls_pinning`); if the orchestrator later presents another certificate (it made a new
one), the pin is dropped and fetched again once. ``http://`` addresses use plain h2c.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]

from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.tls_pinning import grpc_target, pinned_channel

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"


class OrchestratorUnreachable(Exception):
    """``GetOrchestrator`` failed; ``str()`` is one line saying why."""


@dataclass
class _Channel:
    channel: grpc.aio.Channel
    call: Any


class OrchestratorClient:
    """gRPC channels to orchestrators, one per address, kept open and reused."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    async def get_info(
        self, url: str, request: OrchestratorRequest | None = None, timeout: float = 5.0
    ) -> OrchestratorInfo:
        request = request or OrchestratorRequest(ignoreCapacityCheck=True)
        for attempt in (1, 2):
            channel = await self._channel(url)
            try:
                info: OrchestratorInfo = await channel.call(request, timeout=timeout)
                return info
            except grpc.aio.AioRpcError as exc:
                stale_pin = url.startswith("https://") and exc.code() == grpc.StatusCode.UNAVAILABLE
                if attempt == 1 and stale_pin:
                    await self._drop(url)  # the orchestrator may have a new certificate: pin again
                    continue
                raise OrchestratorUnreachable(f"{url}: {exc.code().name}: {exc.details() or 'no details'}") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for url in list(self._channels):
            await self._drop(url)

    async def _drop(self, url: str) -> None:
        held = self._channels.pop(url, None)
        if held is not None:
            await held.channel.close()

    async def _channel(self, url: str) -> _Channel:
        held = self._channels.get(url)
        if held is not None:
            return held
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise OrchestratorUnreachable(f"{url}: not an address with a host and a port")
        if parts.scheme == "http":
            channel = grpc.aio.insecure_channel(grpc_target(parts.hostname, parts.port))
        else:
            try:
                channel, _ = await pinned_channel(parts.hostname, parts.port)
            except (OSError, ssl.SSLError) as exc:
                raise OrchestratorUnreachable(f"{url}: cannot open TLS: {exc}") from None
        call = channel.unary_unary(
            GET_ORCHESTRATOR,
            request_serializer=OrchestratorRequest.SerializeToString,
            response_deserializer=OrchestratorInfo.FromString,
        )
        held = _Channel(channel, call)
        self._channels[url] = held
        return held
