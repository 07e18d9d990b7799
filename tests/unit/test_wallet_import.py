"""`lpnode wallet import` refusals, in-process through the `lpnode` entry point: each is one `lpnode: error:` line,
exit status 2, nothing written, and neither the key (nor a near-miss of it) nor the password in any output.
The round trip and the terminal prompt run as real processes in tests/integration/test_wallet_import.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lpnode.cli import main
from lpnode.payments.signatures import address_of, checksum

# anvil's second public development key: a dev chain's account, never a real one.
KEY_HEX = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDRESS = checksum(address_of(bytes.fromhex(KEY_HEX)))
PASSWORD = "rehearsal password"


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))  # piped: not a terminal
    status = main(["wallet", "import", *args])
    out, err = capsys.readouterr()
    for text in (out + err).lower(), (out + err):
        assert KEY_HEX[:16] not in text and KEY_HEX[-16:] not in text, "the key was printed"
    assert PASSWORD not in out + err
    return status, out, err


def test_each_refusal_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keystore"
    flags = ["--keystore", str(target), "--password", PASSWORD]
    key_file = tmp_path / "key.txt"
    key_file.write_text("")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" * 40)
    refusals = {
        "got 63 characters": run(capsys, monkeypatch, *flags, stdin=KEY_HEX[:-1]),
        "not all of them hex digits": run(capsys, monkeypatch, *flags, stdin=KEY_HEX[:-1] + "z"),
        "got 66 characters": run(capsys, monkeypatch, *flags, stdin=KEY_HEX + "0x"),
        "out of range for Ethereum's curve": run(capsys, monkeypatch, *flags, stdin="0x" + "00" * 32),
        "out of range for Ethereum's curve ": run(capsys, monkeypatch, *flags, stdin="ff" * 32),
        "no private key: give the key": run(capsys, monkeypatch, *flags, stdin=" \n"),
        f"--private-key-file {key_file} is empty": run(
            capsys, monkeypatch, *flags, "--private-key-file", str(key_file)
        ),
        "not a text file": run(capsys, monkeypatch, *flags, "--private-key-file", str(binary)),
        "cannot read it: No such file or directory": run(
            capsys, monkeypatch, *flags, "--private-key-file", str(tmp_path / "missing")
        ),
        "give --password": run(capsys, monkeypatch, "--keystore", str(target), stdin=KEY_HEX),
    }
    for said, (status, out, err) in refusals.items():
        assert status == 2, (said, err)
        assert out == ""
        [line] = err.splitlines()
        assert line.startswith("lpnode: error: ") and said.strip() in line, line
    assert not target.exists()


def test_a_keystore_path_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "keystore.json"
    a_file.write_text("{}")
    status, _, err = run(capsys, monkeypatch, "--keystore", str(a_file), "--password", PASSWORD, stdin=KEY_HEX)
    assert status == 2
    assert err == f"lpnode: error: the keystore directory {a_file} is a file; give a directory\n"
    assert a_file.read_text() == "{}"


def test_a_second_account_joins_a_directory_beside_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keystore = tmp_path / "keystore"
    other = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil's third dev key
    addresses = []
    for key in (KEY_HEX, other):
        status, out, err = run(capsys, monkeypatch, "--keystore", str(keystore), "--password", "", stdin=key)
        assert status == 0, err
        assert err == "lpnode: warning: the keystore file is encrypted with an empty password\n"
        addresses.append(out.split()[1])
    assert addresses[0] == ADDRESS and addresses[1] != ADDRESS
    names = sorted(path.name[-40:] for path in keystore.iterdir())
    assert names == sorted(address.lower()[2:] for address in addresses)
