"""Pinning an orchestrator's self-signed certificate: the certificate a TLS server presents is fetched,
the name to check is one it carries, and a context built from it trusts that server and no other."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lpnode.protocol import create_certificate
from lpnode.protocol.tls_pinning import fetch_certificate, grpc_target, name_in, pinned_context


class TlsServer:
    """A loopback TLS server (in a thread) that completes handshakes with the certificate made for ``host``."""

    def __init__(self, tmp: Path, host: str) -> None:
        cert, key = create_certificate(host)
        (tmp / "cert.pem").write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        self.pem = cert.decode()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TlsServer]:
    held = TlsServer(tmp_path, "orch.example")
    yield held
    held.close()


def test_the_certificate_presented_is_fetched_and_trusted_alone(server: TlsServer, tmp_path: Path) -> None:
    pem = fetch_certificate("127.0.0.1", server.port)
    assert pem.strip() == server.pem.strip()
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pinned_context(pem).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.getpeercert() is not None
    (tmp_path / "other").mkdir()
    other = TlsServer(tmp_path / "other", "orch.example")  # the same name, another certificate
    try:
        with (
            socket.create_connection(("127.0.0.1", other.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            pinned_context(pem).wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        other.close()


def test_the_name_checked_is_one_the_certificate_carries() -> None:
    by_name = create_certificate("orch.example")[0].decode()
    assert name_in(by_name, "orch.example") == "orch.example"
    assert name_in(by_name, "127.0.0.1") == "orch.example"  # dialled by IP: its own name is checked
    by_ip = create_certificate("127.0.0.1")[0].decode()
    assert name_in(by_ip, "127.0.0.1") == "127.0.0.1"


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        fetch_certificate("127.0.0.1", port, timeout=2)


def test_grpc_targets_bracket_ipv6_addresses() -> None:
    assert grpc_target("::1", 8935) == "[::1]:8935"
    assert grpc_target("orch.example", 8935) == "orch.example:8935"
