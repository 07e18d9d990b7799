"""Trusting an orchestrator's self-signed certificate by pinning it (trust on first use).

Orchestrators serve TLS with self-signed certificates (:mod:`lpnode.protocol.certs`, as go-livepeer's), and
go-livepeer's gateways and workers skip verification. grpcio cannot skip it, so a client fetches the
certificate the orchestrator presents and trusts exactly that one, as the livepeer-gateway SDK does. The name
checked is one the certificate carries, so a certificate made for another name (or an IP left out of it)
still works. A client that meets a new certificate (the orchestrator made one) fetches it again.

Gateways (``GetOrchestrator``) and remote workers (``RegisterAIWorker``, and their HTTP calls back) both dial
orchestrators this way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Sequence

import grpc  # type: ignore[import-untyped]
from cryptography import x509

CONNECT_TIMEOUT = 3.0
"""Seconds to wait for the TLS handshake that fetches a certificate."""
ChannelOptions = Sequence[tuple[str, str | int]]


def grpc_target(host: str, port: int) -> str:
    """``host:port`` as grpcio wants it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fetch_certificate(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str:
    """The PEM certificate ``host:port`` presents, unverified. Blocking; raises ``OSError`` or
    ``ssl.SSLError`` when no TLS server answers there."""
    return ssl.get_server_certificate((host, port), timeout=timeout)


def name_in(pem: str, host: str) -> str:
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


async def pinned_channel(host: str, port: int, options: ChannelOptions = ()) -> tuple[grpc.aio.Channel, str]:
    """A gRPC channel to ``host:port`` that trusts exactly the certificate presented now, and that
    certificate (PEM). The certificate is fetched off the event loop; raises ``OSError`` or ``ssl.SSLError``
    when no TLS server answers."""
    pem = await asyncio.to_thread(fetch_certificate, host, port)
    pinned = [*options, ("grpc.ssl_target_name_override", name_in(pem, host))]
    credentials = grpc.ssl_channel_credentials(pem.encode())
    return grpc.aio.secure_channel(grpc_target(host, port), credentials, options=pinned), pem


def pinned_context(pem: str) -> ssl.SSLContext:
    """An SSL context for HTTP clients that trusts exactly the certificate ``pem`` (any host name in it)."""
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False  # the pinned certificate itself is what is trusted
    return context


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
