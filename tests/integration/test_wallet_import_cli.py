"""`lpnode wallet import` as a user runs it: a raw private key piped in, read from a file, or typed at a terminal,
written into a go-ethereum keystore that unlocks to the same key and signs as the same address.

- the keystore file loads back (as -ethKeystorePath does) to the very key, and its signatures recover the address;
- an account already in the directory is refused in one line, exit 2, with nothing written (the other refusals:
  tests/unit/test_wallet_import.py);
- at a terminal the key is asked for without echo;
- the key appears in no output, and never on a command line (it is not an argument).
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from pathlib import Path

from lpnode.payments.keystore import load_wallet
from lpnode.payments.signatures import address_of, checksum, recover, sign
from procs import LPNODE, child_env

# anvil's second public development key: a dev chain's account, never a real one.
KEY_HEX = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY = bytes.fromhex(KEY_HEX)
ADDRESS = checksum(address_of(KEY))
PASSWORD = "rehearsal password"


def wallet_import(keystore: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``lpnode wallet import --keystore KEYSTORE ARGS`` with ``stdin`` piped in (so no terminal)."""
    result = subprocess.run(
        [*LPNODE, "wallet", "import", "--keystore", str(keystore), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    shown = result.stdout + result.stderr
    assert KEY_HEX not in shown.lower() and KEY_HEX[:16] not in shown.lower(), "the key was printed"
    assert PASSWORD not in shown
    assert "Traceback" not in shown
    return result


def files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def test_a_piped_key_becomes_a_keystore_that_signs_as_the_same_address(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    keystore = tmp_path / "keystore"

    done = wallet_import(keystore, "--password", str(password_file), stdin=f"0x{KEY_HEX}\n")

    assert done.returncode == 0, done.stderr
    [path] = files(keystore)
    assert done.stdout.splitlines() == [f"address {ADDRESS}", f"file    {path}"]
    assert path.name.startswith("UTC--") and path.name.endswith("--" + address_of(KEY).hex())
    assert path.stat().st_mode & 0o077 == 0
    wallet = load_wallet(keystore, password=PASSWORD)
    assert wallet.checksum_address == ADDRESS and wallet.key == KEY
    message = b"an orchestrator's ticket params"
    assert checksum(recover(message, sign(wallet.key, message))) == ADDRESS

    shown = subprocess.run(
        [*LPNODE, "wallet", "show", "--keystore", str(keystore)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert shown.stdout.split() == [ADDRESS, str(path)]


def test_an_account_already_there_is_refused_and_a_key_file_is_read(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore"
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"  {KEY_HEX.upper()}\n")  # no 0x, upper case, surrounding space: still the key
    first = wallet_import(keystore, "--private-key-file", str(key_file), "--password", PASSWORD)
    assert first.returncode == 0, first.stderr
    before = files(keystore)

    again = wallet_import(keystore, "--password", PASSWORD, stdin=KEY_HEX)

    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        f"lpnode: error: {keystore} already holds the account {ADDRESS} ({before[0].name}); nothing was written: "
        "use that file, or import into another directory"
    ]
    assert files(keystore) == before
    assert load_wallet(keystore, password=PASSWORD).key == KEY


def test_at_a_terminal_the_key_is_asked_for_without_echo(tmp_path: Path) -> None:
    keystore = tmp_path / "keystore"
    controller, terminal = os.openpty()

    def take_the_terminal() -> None:  # runs in the child after setsid: the pty becomes its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        [*LPNODE, "wallet", "import", "--keystore", str(keystore)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=child_env(),
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    screen = b""

    def answer(prompt: bytes, text: str) -> None:
        nonlocal screen
        deadline = time.monotonic() + 30
        while prompt not in screen:
            assert time.monotonic() < deadline, f"no {prompt!r} prompt; the terminal shows {screen!r}"
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                screen += os.read(controller, 4096)
        os.write(controller, text.encode() + b"\n")

    try:
        answer(b"Private key", KEY_HEX)
        answer(b"Password for the new keystore file", PASSWORD)
        answer(b"Repeat it", PASSWORD)
        assert process.wait(timeout=60) == 0
        while select.select([controller], [], [], 0.2)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert KEY_HEX.encode() not in screen and PASSWORD.encode() not in screen
    assert f"address {ADDRESS}".encode() in screen
    assert load_wallet(keystore, password=PASSWORD).key == KEY
