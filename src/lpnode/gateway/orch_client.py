"""Calling an orchestrator's ``GetOrchestrator`` over gRPC, as a gateway does.

Orchestrators serve TLS with self-signed certificates and gateways do not check them against a CA
(go-livepeer skips verification). grpcio cannot skip verification, so the first call to an orchestrator
fetches its certificate and pins it (trust on first use, as the livepeer-gateway SDK does); if the
orchestrator later presents another certificate (it made a new one), the pin is dropped and fetched again
once. The name checked is one the certificate carries, so a certificate made for another name still
works. ``http://`` addresses use plain h2c.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]
from cryptography import x509

from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"
CONNECT_TIMEOUT = 3.0


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
        target = f"{parts.hostname}:{parts.port}" if ":" not in parts.hostname else f"[{parts.hostname}]:{parts.port}"
        if parts.scheme == "http":
            channel = grpc.aio.insecure_channel(target)
        else:
            try:
                pem = await asyncio.to_thread(_fetch_certificate, parts.hostname, parts.port)
            except (OSError, ssl.SSLError) as exc:
                raise OrchestratorUnreachable(f"{url}: cannot open TLS: {exc}") from None
            options = [("grpc.ssl_target_name_override", _name_in(pem, parts.hostname))]
            channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(pem.encode()), options=options)
        call = channel.unary_unary(
            GET_ORCHESTRATOR,
            request_serializer=OrchestratorRequest.SerializeToString,
            response_deserializer=OrchestratorInfo.FromString,
        )
        held = _Channel(channel, call)
        self._channels[url] = held
        return held


def _fetch_certificate(host: str, port: int) -> str:
    return ssl.get_server_certificate((host, port), timeout=CONNECT_TIMEOUT)


def _name_in(pem: str, host: str) -> str:
    """A name the certificate is valid for: ``host`` when it is listed, else its first DNS name or CN."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names, ips = [], []
    if host in names or (_is_ip(host) and host in ips):
        return host
    if names:
        return str(names[0])
    common = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(common[0].value) if common else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
