"""Finding anvil and the shipped contract artifacts, without starting a chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpnode.errors import ConfigError
from lpnode.payments import devchain
from lpnode.payments.devchain import CONTRACTS, artifact, find_anvil


def test_lpnode_anvil_wins_over_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "anvil"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("LPNODE_ANVIL", str(binary))
    assert find_anvil() == str(binary)


def test_lpnode_anvil_that_is_not_a_program_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LPNODE_ANVIL", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"LPNODE_ANVIL=.*missing is not an executable file"):
        find_anvil()


def test_no_anvil_anywhere_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPNODE_ANVIL", raising=False)
    monkeypatch.setattr(devchain, "_REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"make up.*npm install --prefix \.tools @foundry-rs/anvil@1\.7\.1"):
        find_anvil()


def test_the_make_installed_anvil_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPNODE_ANVIL", raising=False)
    binary = tmp_path / ".tools/node_modules/@foundry-rs/anvil-darwin-arm64/bin/anvil"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(devchain, "_REPO_ROOT", tmp_path)
    assert find_anvil() == str(binary)


def test_every_contract_ships_its_abi_and_bytecode() -> None:
    for name in CONTRACTS:
        doc = artifact(name)
        assert doc["abi"] and doc["bytecode"].startswith("0x"), name
        assert doc["compiler"].startswith("vyper 0.4.3"), name
