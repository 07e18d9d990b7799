"""Ethereum wallets from go-ethereum keystore files, as go-livepeer's ``-ethKeystorePath``, ``-ethAcctAddr`` and
``-ethPassword`` read them, and the writing of new ones (:func:`create_wallet`, :func:`import_wallet`).

A keystore path is either one keystore file or a directory of them (go-ethereum's layout, files named
``UTC--<time>--<address hex>``). The password is a string or the path of a file holding it. Errors are
:class:`~lpnode.errors.ConfigError` lines naming the file and what to do; no password, key or keystore content
ever appears in one (nor in a :class:`Wallet`'s ``repr``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_account import Account

from lpnode.errors import ConfigError
from lpnode.payments.signatures import address_of, checksum, parse_address

_HEX = frozenset("0123456789abcdefABCDEF")
#: The order of secp256k1's group: a private key is a number from 1 to this, exclusive.
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Wallet:
    """An unlocked account: its 20-byte address and 32-byte private key (kept out of ``repr``)."""

    address: bytes
    key: bytes = field(repr=False)

    @property
    def checksum_address(self) -> str:
        """The address in EIP-55 spelling."""
        return checksum(self.address)

    @classmethod
    def from_key(cls, key: bytes) -> Wallet:
        """The wallet of a raw 32-byte private key (dev chains and tests)."""
        return cls(address=address_of(key), key=key)


def read_password(value: str) -> str:
    """``-ethPassword``: the path of an existing file holding the password (surrounding whitespace trimmed), or else
    the password itself."""
    if value:
        path = Path(value).expanduser()
        try:
            if path.is_file():
                return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"-ethPassword: cannot read the password file {path}: {exc.strerror}") from None
    return value


def load_wallet(keystore: Path, address: str = "", password: str = "") -> Wallet:
    """Unlock the account in ``keystore`` (a keystore file, or a directory of them). ``address`` picks one when the
    directory holds several; ``password`` decrypts it. ConfigError when the path, the choice or the password is
    wrong."""
    wanted = _wanted_address(address)
    path = keystore.expanduser()
    if path.is_dir():
        files = _keystore_files(path)
        if wanted is not None:
            files = [(p, d) for p, d in files if _file_address(d) == wanted]
            if not files:
                raise ConfigError(
                    f"-ethKeystorePath {path}: no keystore file for -ethAcctAddr {checksum(wanted)}; "
                    "check the address, or point -ethKeystorePath at the right directory"
                )
        elif not files:
            raise ConfigError(
                f"-ethKeystorePath {path}: no keystore files in this directory; create one with `lpnode wallet new`"
            )
        elif len(files) > 1:
            choices = ", ".join(sorted(checksum(a) for a in (_file_address(d) for _, d in files) if a))
            raise ConfigError(
                f"-ethKeystorePath {path} holds several accounts ({choices}); choose one with -ethAcctAddr"
            )
        file_path, document = files[0]
    elif path.is_file():
        loaded = _read_keystore(path)
        if loaded is None:
            raise ConfigError(f"-ethKeystorePath {path}: not a keystore file (expected go-ethereum's JSON format)")
        file_path, document = path, loaded
        if wanted is not None and _file_address(document) not in (None, wanted):
            raise ConfigError(
                f"-ethKeystorePath {path} holds another account than -ethAcctAddr {checksum(wanted)}; "
                "check the address or the file"
            )
    else:
        raise ConfigError(f"-ethKeystorePath {path}: no such file or directory")
    return _unlock(file_path, document, password)


def create_wallet(keystore_dir: Path, password: str) -> tuple[Wallet, Path]:
    """Make a new account, write it encrypted with ``password`` (scrypt) into ``keystore_dir`` under go-ethereum's
    file name, readable by its owner only; return the wallet and the file."""
    return _write_keystore(keystore_dir, os.urandom(32), password)


def import_wallet(keystore_dir: Path, key: bytes, password: str) -> tuple[Wallet, Path]:
    """Write the account of the raw private ``key`` (32 bytes, see :func:`parse_private_key`) into ``keystore_dir``
    as :func:`create_wallet` writes a new one, and return the wallet and the file. ConfigError, with nothing
    written, when the directory already holds a keystore file for that account (:func:`refuse_existing`)."""
    wallet = Wallet.from_key(key)
    refuse_existing(keystore_dir, wallet.address)
    return _write_keystore(keystore_dir, key, password)


def refuse_existing(keystore_dir: Path, address: bytes) -> None:
    """ConfigError when ``keystore_dir`` already holds a keystore file for ``address`` (nothing decrypted)."""
    directory = keystore_dir.expanduser()
    if not directory.is_dir():
        return
    for path, document in _keystore_files(directory):
        if _file_address(document) == address:
            raise ConfigError(
                f"{directory} already holds the account {checksum(address)} ({path.name}); nothing was written: "
                "use that file, or import into another directory"
            )


def parse_private_key(text: str) -> bytes:
    """A raw private key as 64 hex digits (``0x`` optional, surrounding whitespace ignored) in bytes. ConfigError
    when it is not one; the message never repeats the text, which may be a key with a typo."""
    value = text.strip().removeprefix("0x").removeprefix("0X")
    if not value:
        raise ConfigError("no private key was given: expected 64 hex digits (32 bytes), 0x optional")
    if len(value) != 64 or any(c not in _HEX for c in value):
        raise ConfigError(
            f"the private key must be 64 hex digits (32 bytes), 0x optional; got {len(value)} characters"
            + ("" if all(c in _HEX for c in value) else ", not all of them hex digits")
        )
    key = bytes.fromhex(value)
    if not 0 < int.from_bytes(key, "big") < _SECP256K1_ORDER:
        raise ConfigError("the private key is out of range for Ethereum's curve (secp256k1): it is not a usable key")
    return key


def _write_keystore(keystore_dir: Path, key: bytes, password: str) -> tuple[Wallet, Path]:
    directory = keystore_dir.expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"the keystore directory {directory} is a file; give a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the keystore directory {directory}: {exc.strerror}") from None
    wallet = Wallet.from_key(key)
    document = Account.encrypt(key, password, kdf="scrypt")
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H-%M-%S.") + f"{now.microsecond * 1000:09d}Z"
    path = directory / f"UTC--{stamp}--{wallet.address.hex()}"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
    except OSError as exc:
        raise ConfigError(f"cannot write the keystore file {path}: {exc.strerror}") from None
    return wallet, path


def _wanted_address(address: str) -> bytes | None:
    if not address.strip():
        return None
    try:
        return parse_address(address)
    except ValueError as exc:
        raise ConfigError(f"-ethAcctAddr: {exc}") from None


def _keystore_files(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(directory.iterdir()):
        # go-ethereum skips hidden and editor backup files in its keystore directory.
        if path.name.startswith(".") or path.name.endswith("~") or not path.is_file():
            continue
        document = _read_keystore(path)
        if document is not None:
            found.append((path, document))
    return found


def _read_keystore(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("crypto", document.get("Crypto")), dict):
        return None
    return document


def _file_address(document: dict[str, Any]) -> bytes | None:
    try:
        return parse_address(str(document["address"]))
    except (KeyError, ValueError):
        return None


def _unlock(path: Path, document: dict[str, Any], password: str) -> Wallet:
    try:
        key = bytes(Account.decrypt(document, password))
    except ValueError:
        raise ConfigError(
            f"cannot unlock the keystore file {path}: wrong password; give the right one with -ethPassword "
            "(a string or a file)"
        ) from None
    except Exception:  # a malformed document fails in many ways inside eth-keyfile; say only that it is unusable
        raise ConfigError(
            f"cannot unlock the keystore file {path}: the file is damaged or of an unknown kind"
        ) from None
    wallet = Wallet.from_key(key)
    listed = _file_address(document)
    if listed is not None and listed != wallet.address:
        raise ConfigError(
            f"the keystore file {path} names {checksum(listed)} but holds the key of {wallet.checksum_address}"
        )
    return wallet
