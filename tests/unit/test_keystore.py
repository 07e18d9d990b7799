"""Keystore wallets load as go-livepeer's -ethKeystorePath/-ethAcctAddr/-ethPassword do, and never leak secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eth_account import Account

from lpnode.errors import ConfigError
from lpnode.payments.keystore import Wallet, create_wallet, load_wallet, read_password

PASSWORD = "correct horse battery staple"


def write_keystore(directory: Path, key: bytes, password: str = PASSWORD) -> Path:
    """A keystore file as go-ethereum names it (cheap KDF: these tests are about files, not scrypt)."""
    document = Account.encrypt(key, password, kdf="pbkdf2", iterations=2)
    path = directory / f"UTC--2024-01-01T00-00-00.000000000Z--{document['address']}"
    path.write_text(json.dumps(document))
    return path


def test_created_wallet_is_a_go_ethereum_file_that_loads_back(tmp_path: Path) -> None:
    wallet, path = create_wallet(tmp_path / "keystore", PASSWORD)
    assert re.fullmatch(r"UTC--\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{9}Z--[0-9a-f]{40}", path.name)
    assert path.name.endswith(wallet.address.hex())
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text())["crypto"]["kdf"] == "scrypt"
    assert load_wallet(tmp_path / "keystore", password=PASSWORD) == wallet
    assert load_wallet(path, address=wallet.checksum_address, password=PASSWORD) == wallet


def test_address_picks_among_several_accounts(tmp_path: Path) -> None:
    first, second = bytes([1]) * 32, bytes([2]) * 32
    write_keystore(tmp_path, first)
    write_keystore(tmp_path, second)
    (tmp_path / ".hidden").write_text("not a key")
    wanted = Wallet.from_key(second)
    assert load_wallet(tmp_path, wanted.checksum_address, PASSWORD) == wanted
    with pytest.raises(ConfigError, match=r"several accounts .* choose one with -ethAcctAddr"):
        load_wallet(tmp_path, "", PASSWORD)
    with pytest.raises(ConfigError, match="no keystore file for -ethAcctAddr"):
        load_wallet(tmp_path, "0x" + "ab" * 20, PASSWORD)


def test_errors_are_one_line_and_never_carry_the_password_or_key(tmp_path: Path) -> None:
    key = bytes([7]) * 32
    path = write_keystore(tmp_path, key)
    attempts: list[tuple[Path, str, str]] = [
        (path, "", "wrong " + PASSWORD),
        (tmp_path / "missing", "", PASSWORD),
        (tmp_path, "not-an-address", PASSWORD),
    ]
    for keystore, address, password in attempts:
        with pytest.raises(ConfigError) as caught:
            load_wallet(keystore, address, password)
        text = str(caught.value)
        assert "\n" not in text and PASSWORD not in text and key.hex() not in text
    wallet = load_wallet(path, password=PASSWORD)
    assert key.hex() not in repr(wallet) and "key" not in repr(wallet)


def test_password_is_a_string_or_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "password.txt"
    secret_file.write_text(f"  {PASSWORD}\n")
    assert read_password(str(secret_file)) == PASSWORD
    assert read_password(PASSWORD) == PASSWORD
    assert read_password("") == ""


def test_a_file_that_is_not_a_keystore_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    with pytest.raises(ConfigError, match="not a keystore file"):
        load_wallet(junk, password=PASSWORD)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no keystore files"):
        load_wallet(empty, password=PASSWORD)
