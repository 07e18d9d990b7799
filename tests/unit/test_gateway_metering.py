"""Metering: what `lpnode usage` counts (served requests' units and spend; the rest apart), and how a job whose
client went away mid-answer is recorded (499, not charged), through the gateway's job wrapper and a real
uvicorn server on loopback, in process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.gateway.keys_command import run_usage
from lpnode.gateway.usage import UsageLog, UsageRecord, fee_wei
from lpnode.http_relay import RelayedStream

PRICE = Fraction(3)  # wei per unit
UNITS = 1000


def record_into(log: UsageLog) -> tuple[list[int], JobWrapper]:
    """A job wrapper recording as the gateway does (units × price as the fee), and the statuses it recorded."""
    statuses: list[int] = []

    def record(job: JobRecord, status: int) -> None:
        statuses.append(status)
        log.record(
            UsageRecord(
                pipeline=job.pipeline, model_id=job.model_id, units=job.units, price_wei=fee_wei(job.units, job.price),
                orchestrator=job.orchestrator, status=status, request_id=job.request_id,
            )
        )  # fmt: skip

    return statuses, JobWrapper(record=record)


def usage_table(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """`lpnode usage --by pipeline --data-dir DATA_DIR`, split into cells."""
    capsys.readouterr()
    run_usage(argparse.Namespace(data_dir=data_dir, since=None, by="pipeline", json=False))
    return [line.split() for line in capsys.readouterr().out.strip().splitlines()]


def test_usage_counts_units_and_spend_of_served_requests_and_the_rest_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with UsageLog(tmp_path / "gateway.sqlite") as log:
        for status in (200, 200, 400, 429, 499, 503):
            log.record(UsageRecord(pipeline="llm", model_id="m", units=UNITS, price_wei="3000", status=status))
        [row] = log.summary(group_by=["pipeline"])
    assert (row["requests"], row["served"], row["refused"], row["failed"], row["cancelled"]) == (6, 2, 2, 1, 1)
    assert row["errors"] == 4
    assert (row["units"], row["spend_wei"]) == (2 * UNITS, "6000")

    table = usage_table(tmp_path, capsys)
    assert table[0][:7] == ["PIPELINE", "REQUESTS", "SERVED", "REFUSED", "FAILED", "CANCELLED", "UNITS"]
    assert table[1][:8] == ["llm", "6", "2", "2", "1", "1", str(2 * UNITS), "6000"]


def test_a_failed_job_is_recorded_with_its_status_and_no_fee(tmp_path: Path) -> None:
    async def scenario(wrapper: JobWrapper) -> None:
        async def work(job: JobRecord) -> Response:
            job.pipeline, job.units, job.price = "llm", UNITS, PRICE  # priced, then the answer failed
            return JSONResponse({"error": "boom"}, status_code=502)

        scope = {"type": "http", "method": "POST", "path": "/llm", "headers": [], "query_string": b""}
        await wrapper.serve(Request(scope), work)

    with UsageLog(tmp_path / "gateway.sqlite") as log:
        statuses, wrapper = record_into(log)
        asyncio.run(scenario(wrapper))
        [record] = log.rows()
    assert statuses == [502] and record.price_wei == "" and record.units == UNITS


# -- a real server, a client that leaves mid-stream --------------------------------------------------------


def streaming_app(wrapper: JobWrapper, events: int | None, cut_off: bool = False) -> Starlette:
    """``POST /llm``: an event stream of ``events`` events (None: it never ends), priced ``UNITS × PRICE``."""

    async def handle(request: Request) -> Response:
        async def work(job: JobRecord) -> Response:
            job.pipeline, job.model_id, job.units, job.price = "llm", "m", UNITS, PRICE
            job.orchestrator = "https://127.0.0.1:1"

            async def chunks() -> AsyncIterator[bytes]:
                n = 0
                while events is None or n < events:
                    yield f"data: {n}\n\n".encode()
                    n += 1
                    await asyncio.sleep(0.01)
                if cut_off:
                    response.cut_off()  # the upstream broke: the producer ends the body early

            response = RelayedStream(chunks(), media_type="text/event-stream")
            return response

        return await wrapper.serve(request, work)

    return Starlette(routes=[Route("/llm", handle, methods=["POST"])])


async def serve_and_call(app: Starlette, read_events: int | None) -> None:
    """Serve ``app`` with uvicorn on loopback; POST /llm and read ``read_events`` events then hang up
    (None: read the whole answer)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"http://127.0.0.1:{port}/llm", json={})
            assert response.status == 200
            if read_events is None:
                await response.read()
            else:
                for _ in range(read_events):
                    await response.content.readuntil(b"\n\n")
            response.close()  # hang up
        await asyncio.sleep(0.3)  # the server notices and ends the stream
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, 5)
        sock.close()


def run_stream(tmp_path: Path, events: int | None, read_events: int | None, cut_off: bool = False) -> UsageRecord:
    with UsageLog(tmp_path / "gateway.sqlite") as log:
        _, wrapper = record_into(log)
        app = streaming_app(wrapper, events, cut_off)
        asyncio.run(asyncio.wait_for(serve_and_call(app, read_events), 20))
        [record] = log.rows()
    return record


def test_a_stream_whose_client_hangs_up_is_recorded_499_and_not_charged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = run_stream(tmp_path, events=None, read_events=3)
    assert (record.status, record.price_wei) == (499, "")
    table = usage_table(tmp_path, capsys)
    assert table[1][:8] == ["llm", "1", "0", "0", "0", "1", "0", "-"]


def test_a_stream_read_to_its_end_is_recorded_200_and_charged(tmp_path: Path) -> None:
    record = run_stream(tmp_path, events=5, read_events=None)
    assert (record.status, record.price_wei) == (200, str(UNITS * PRICE))


def test_a_stream_cut_off_upstream_is_recorded_502_and_not_charged(tmp_path: Path) -> None:
    record = run_stream(tmp_path, events=2, read_events=None, cut_off=True)
    assert (record.status, record.price_wei) == (502, "")
