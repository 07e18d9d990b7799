"""The self-signed certificate: made like go-livepeer's, kept across restarts, replaced when it no longer fits."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from lpnode.errors import ConfigError
from lpnode.protocol import create_certificate, ensure_certificate

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_certificate_is_a_p256_self_signed_ca_for_a_year() -> None:
    cert = load(create_certificate("node.example.com", now=NOW)[0])
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=365)
    assert cert.not_valid_before_utc <= NOW


def test_dns_host_is_a_dns_san_only() -> None:
    san = load(create_certificate("node.example.com")[0]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["node.example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ip_host_is_both_a_dns_san_and_an_ip_san(host: str) -> None:
    san = load(create_certificate(host)[0]).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == [host]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(host)]


def test_empty_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs the service host"):
        create_certificate("")


def test_ensure_writes_a_private_key_and_reuses_the_pair(tmp_path: Path) -> None:
    files = ensure_certificate(tmp_path / "data", "127.0.0.1")
    assert stat.S_IMODE(files.keyfile.stat().st_mode) == 0o600
    first = files.certfile.read_bytes()
    again = ensure_certificate(tmp_path / "data", "127.0.0.1")
    assert again == files and again.certfile.read_bytes() == first
    # A standard TLS stack accepts the pair and trusts the cert as its own root.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.certfile, files.keyfile)
    client = ssl.create_default_context(cafile=str(files.certfile))
    assert client.get_ca_certs()[0]["subjectAltName"] == (("DNS", "127.0.0.1"), ("IP Address", "127.0.0.1"))


def test_ensure_replaces_a_cert_for_another_host(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, "127.0.0.1").certfile.read_bytes()
    second = ensure_certificate(tmp_path, "node.example.com").certfile.read_bytes()
    assert first != second
    assert load(second).extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["node.example.com"]


def test_ensure_replaces_a_cert_near_expiry_or_a_broken_file(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path, "h", now=NOW).certfile.read_bytes()
    near_expiry = NOW + datetime.timedelta(days=340)
    second = ensure_certificate(tmp_path, "h", now=near_expiry).certfile.read_bytes()
    assert second != first
    (tmp_path / "key.pem").write_text("not a key")
    files = ensure_certificate(tmp_path, "h", now=near_expiry)
    assert files.certfile.read_bytes() != second


def test_ensure_in_an_unwritable_place_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="choose a writable data dir"):
        ensure_certificate(blocker / "sub", "h")
