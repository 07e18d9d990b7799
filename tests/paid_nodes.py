"""What the tests of paid nodes share: keystore wallets for dev accounts and the chain flags of a dev chain.

Wallets are written with a cheap scrypt (2**10 iterations) so tests unlock them quickly; the nodes read them with
the same keystore code as any go-ethereum keystore.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account

from lpnode.payments.devchain import DevChain

PASSWORD = "correct horse battery staple"
ETH = 10**18


def keystore(directory: Path, key: bytes) -> Path:
    """A keystore file for ``key`` in ``directory``, with its password in ``directory/password``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "keystore.json"
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="scrypt", iterations=2**10)))
    (directory / "password").write_text(PASSWORD + "\n")
    return path


def wallet_flags(directory: Path, key: bytes) -> list[str]:
    """``-ethKeystorePath`` and ``-ethPassword`` for a node paying or paid with ``key``."""
    path = keystore(directory, key)
    return ["-ethKeystorePath", str(path), "-ethPassword", str(path.parent / "password")]


def chain_flags(chain: DevChain) -> list[str]:
    """The flags that put a node on ``chain``."""
    return ["-network", "devchain", "-ethUrl", chain.url, "-ethController", chain.controller]
