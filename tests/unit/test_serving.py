"""The serving helpers every long-running command shares: a socket bound up front, a port check, and an
async main run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import pytest

from lpnode.errors import ConfigError
from lpnode.serving import bind_socket, port_is_free, run_until_stopped


def test_a_busy_port_is_one_clear_config_error() -> None:
    held = bind_socket("127.0.0.1", 0)
    held.listen()
    port = held.getsockname()[1]
    try:
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)
    finally:
        held.close()
    assert port_is_free("127.0.0.1", port)


def test_a_busy_port_names_the_flag_that_sets_it_and_no_other() -> None:
    held = bind_socket("127.0.0.1", 0)
    held.listen()
    port = held.getsockname()[1]
    try:
        with pytest.raises(ConfigError) as named:
            bind_socket("127.0.0.1", port, flag="--http-addr")
        with pytest.raises(ConfigError) as unnamed:
            bind_socket("127.0.0.1", port)
    finally:
        held.close()
    assert str(named.value).endswith("stop the process using it (another lpnode?) or choose another with --http-addr")
    assert "--" not in str(unnamed.value)  # a command without such a flag is not sent looking for one


def test_the_bound_socket_can_be_handed_to_a_child() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.get_inheritable() and sock.family == socket.AF_INET
    finally:
        sock.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_sets_stop_and_main_winds_down(signum: signal.Signals) -> None:
    async def main(stop: asyncio.Event) -> str:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), 10)
        return "stopped in order"

    before = signal.getsignal(signal.SIGTERM)
    assert run_until_stopped(main) == "stopped in order"
    assert signal.getsignal(signal.SIGTERM) == before  # the process's own handling is back
