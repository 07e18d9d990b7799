"""Host ports for managed runners: per-pipeline bases plus the slot, skipping busy and taken ports."""

from __future__ import annotations

import socket

import pytest

from lpnode.orchestrator.pool import PORT_BASES, PoolConfigError, pick_port
from lpnode.orchestrator.pool.ports import port_candidates, port_is_free


def test_slot_zero_gets_go_livepeers_base_port() -> None:
    assert pick_port("text-to-image", 0, is_free=lambda h, p: True) == 8000
    assert pick_port("llm", 0, is_free=lambda h, p: True) == 8500
    assert pick_port("image-to-text", 3, is_free=lambda h, p: True) == 8703
    assert PORT_BASES["live-video-to-video"] == 8900


def test_busy_or_taken_ports_are_skipped_within_the_pipelines_block() -> None:
    busy = {8501}
    assert pick_port("llm", 1, taken={8511}, is_free=lambda h, p: p not in busy) == 8521


def test_candidates_stay_in_the_pipelines_block_and_wrap() -> None:
    ports = list(port_candidates(8700, 12))
    assert ports[0] == 8712 and ports[-1] == 8702
    assert all(8700 <= p < 8800 for p in ports) and len(ports) == 10


def test_no_free_port_says_what_to_do() -> None:
    with pytest.raises(PoolConfigError, match=r"no free port for a llm runner in slot 0 .*stop what is listening"):
        pick_port("llm", 0, is_free=lambda h, p: False)


def test_bind_check_sees_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])
