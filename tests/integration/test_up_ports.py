"""`lpnode up` with one of its ports already taken (a second `lpnode up`, or anything else): it refuses
before starting anything, in one line naming its own flag for that port, and never prints its banner."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs import free_port, run_cli


@pytest.fixture
def held() -> Iterator[int]:
    """A loopback port held by someone else, listening, as a running `lpnode up` would hold it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("flag", ["--http-addr", "--cli-addr", "--orch-port"])
def test_a_busy_port_stops_up_before_its_banner_naming_its_flag(flag: str, held: int, tmp_path: Path) -> None:
    ports = {"--http-addr": free_port(), "--cli-addr": free_port(), "--orch-port": free_port()}
    ports[flag] = held
    args = ["up", "--data-dir", str(tmp_path), "--ai-models", "text-to-image:lpnode/tiny-text-to-image:true"]
    args += ["--http-addr", f"127.0.0.1:{ports['--http-addr']}", "--cli-addr", f"127.0.0.1:{ports['--cli-addr']}"]
    args += ["--orch-port", str(ports["--orch-port"])]
    result = run_cli(*args, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lpnode is up" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"lpnode: error: cannot listen on 127.0.0.1:{held}: the port is in use; "
        f"stop the process using it (another lpnode?) or choose another with {flag}"
    )
    assert "--service-addr" not in result.stderr and "--port " not in result.stderr
    assert not (tmp_path / "orchestrator").exists()  # nothing was started
