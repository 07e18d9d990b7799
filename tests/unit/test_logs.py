"""lpnode's log lines: structured fields that read back, and uvicorn's start and stop lines once per process
even when it serves several ports (the gateway's public and admin APIs are two uvicorn servers)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette

from lpnode.logs import configure_logging, event_fields, log_event
from lpnode.serving import QuietServer, bind_socket


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What lpnode's logging set-up writes (to stderr in a command; here to a buffer)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("info")
    (handler,) = root.handlers
    buffer = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)


def test_two_servers_in_one_process_say_started_and_finished_once(logged: io.StringIO) -> None:
    async def two_servers() -> None:
        sockets = [bind_socket("127.0.0.1", 0) for _ in range(2)]
        servers = [
            QuietServer(uvicorn.Config(Starlette(), loop="none", log_config=None, access_log=False, lifespan="off"))
            for _ in sockets
        ]
        tasks = [asyncio.ensure_future(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets, strict=True)]
        while not all(s.started for s in servers):  # noqa: ASYNC110 - uvicorn has no started event
            await asyncio.sleep(0.01)
        for server in servers:
            server.should_exit = True
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for sock in sockets:
            sock.close()

    asyncio.run(two_servers())
    lines = logged.getvalue().splitlines()
    for said in ("Started server process", "Shutting down", "Finished server process"):
        assert sum(said in line for line in lines) == 1, lines


def test_a_warning_is_never_dropped(logged: io.StringIO) -> None:
    for _ in range(2):
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert logged.getvalue().count("Invalid HTTP request received.") == 2


def test_fields_read_back_as_written(logged: io.StringIO) -> None:
    reason = 'model "a/b" is not in the models dir /m; fetch it with: lpnode models pull a/b --models-dir /m'
    log_event(logging.getLogger("lpnode.runner"), "model failed to load", logging.ERROR, model_id="a/b", reason=reason)
    line = logged.getvalue().strip()
    assert event_fields(line.split(" model failed to load ", 1)[1]) == {"model_id": "a/b", "reason": reason}
