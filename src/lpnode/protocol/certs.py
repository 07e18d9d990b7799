"""The orchestrator's self-signed TLS certificate, made like go-livepeer's (``server/cert.go``).

ECDSA P-256, self-signed, a CA (so clients that pin it can use it as their root), key usage
digitalSignature + keyCertSign, extended key usage serverAuth, valid one year. The service host goes in
the subject alternative names as a DNS name (go-livepeer does that even for an IP) and, when it is an IP
address, as an IP too, so both Go-style and strict verifiers accept it.

Clients do not check it against a CA: go-livepeer gateways skip verification and the livepeer-gateway SDK
pins whatever it first sees. Keeping the same certificate across restarts spares SDK clients one failed
attempt (they evict a stale pin and retry), so :func:`ensure_certificate` reuses a valid one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lpnode.errors import ConfigError

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
"""A stored certificate this close to expiry is replaced at start."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS server."""

    certfile: Path
    keyfile: Path


def create_certificate(host: str, *, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A new self-signed certificate for ``host``: ``(cert_pem, key_pem)``."""
    host = host.strip("[]")
    if not host:
        raise ConfigError("the certificate needs the service host (e.g. 127.0.0.1 or node.example.com); got ''")
    start = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lpnode")])
    alt_names: list[x509.GeneralName] = [x509.DNSName(host)]
    ip = _ip_or_none(host)
    if ip is not None:
        alt_names.append(x509.IPAddress(ip))
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # A minute of slack for clients whose clock is a little behind.
        .not_valid_before(start - datetime.timedelta(minutes=1))
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(data_dir: Path, host: str, *, now: datetime.datetime | None = None) -> TlsFiles:
    """The certificate in ``data_dir`` for ``host``, made anew if missing, for another host, or near expiry."""
    host = host.strip("[]")
    files = TlsFiles(data_dir / CERT_FILE, data_dir / KEY_FILE)
    current = now or datetime.datetime.now(datetime.UTC)
    if _usable(files, host, current):
        return files
    cert_pem, key_pem = create_certificate(host, now=current)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _write_private(files.keyfile, key_pem)
        files.certfile.write_bytes(cert_pem)
    except OSError as exc:
        raise ConfigError(f"cannot write the TLS certificate to {data_dir}: {exc}; choose a writable data dir") from exc
    return files


def certificate_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in ``cert``'s subject alternative names, in order."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(entry.value) for entry in san if isinstance(entry, x509.DNSName | x509.IPAddress)]


def _usable(files: TlsFiles, host: str, now: datetime.datetime) -> bool:
    if not (files.certfile.is_file() and files.keyfile.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.certfile.read_bytes())
        key = serialization.load_pem_private_key(files.keyfile.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        return False
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fresh = cert.not_valid_after_utc - now > RENEW_BEFORE and cert.not_valid_before_utc <= now
    return same_key and fresh and host in certificate_hosts(cert)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
