"""Trickle conformance: go-livepeer's trickle rules, checked on real servers with real clients.

The same suite runs against a standalone ``lpnode trickle serve`` process and, through the orchestrator's
shared port (TLS, hypercorn), against the server an ``lpnode orchestrator`` mounts at ``/ai/trickle/``. Our
aiohttp clients drive most checks; raw requests check status codes and headers; pytrickle (Livepeer's
Python SDK, in a virtualenv of its own) publishes and subscribes against the standalone server.

Streaming-through is asserted by order of events, never by timing: a subscriber must hold the first bytes of
a segment while its publisher is still holding the segment open.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from multidict import CIMultiDict

from lpnode.trickle import (
    ChannelNotFoundError,
    SegmentCutOffError,
    TrickleError,
    TricklePublisher,
    TrickleSubscriber,
    TrickleUnreachableError,
)
from procs import LPNODE, ChildProcess, OrchestratorProcess, child_env, free_port, run_cli
from trickle_env import PYTRICKLE_SCRIPT, pytrickle_python

T = TypeVar("T")
STEP = 20.0
"""Seconds any one awaited step may take before the test fails (a bound, not a speed check)."""
MAX_SEGMENT = 256 * 1024
IDLE_TIMEOUT = 1.5


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


async def step(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, STEP)


@dataclass
class Server:
    kind: str
    base: str
    """Channel URLs are ``base + "/" + name``."""
    create_headers: dict[str, str]
    autocreate: bool

    def url(self, name: str) -> str:
        return f"{self.base}/{name}-{time.monotonic_ns()}"

    async def create(self, url: str, mime: str = "video/MP2T") -> None:
        async with TricklePublisher(url, mime, headers=self.create_headers, delete_on_close=False) as pub:
            await pub.create()


class StandaloneProcess(ChildProcess):
    """``lpnode trickle serve`` on a free port (idle channels swept after ``idle_timeout`` seconds)."""

    def __init__(self, log_path: Path, idle_timeout: float = 300.0) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = ["--listen", f"127.0.0.1:{self.port}", "--idle-timeout", str(idle_timeout)]
        args += ["--sweep-interval", "0.25", "--max-segment-bytes", str(MAX_SEGMENT)]
        self.proc = subprocess.Popen(
            [*LPNODE, "trickle", "serve", *args], stdout=self._log, stderr=subprocess.STDOUT, env=child_env()
        )

    def wait_ready(self) -> None:
        async def probe() -> bool:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/none/next") as resp:
                        return resp.status == 404
                except aiohttp.ClientConnectionError:
                    return False

        for _ in range(200):
            assert self.proc.poll() is None, self.log_path.read_text()
            if asyncio.run(probe()):
                return
            time.sleep(0.1)
        raise AssertionError(f"trickle server not ready:\n{self.log_path.read_text()}")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    proc = StandaloneProcess(tmp_path_factory.mktemp("trickle") / "serve.log")
    try:
        proc.wait_ready()
        yield Server("standalone", f"http://127.0.0.1:{proc.port}", {}, autocreate=True)
    finally:
        assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("orch")
    orch = OrchestratorProcess("", base / "models", base / "data", "--orch-secret", "s")
    try:
        orch.wait_ready()
        yield Server("orchestrator", orch.base_url + "/ai/trickle", {"Authorization": "s"}, autocreate=False)
    finally:
        orch.stop()


@pytest.fixture(scope="module", params=["standalone", "orchestrator"])
def server(request: pytest.FixtureRequest) -> Server:
    found: Server = request.getfixturevalue(request.param)
    return found


async def raw(method: str, url: str, **kwargs: Any) -> tuple[int, CIMultiDict[str], str]:
    """One plain request (any certificate accepted): status, headers, body text."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session,
        session.request(method, url, **kwargs) as resp,
    ):
        return resp.status, CIMultiDict(resp.headers), await resp.text()


async def status_text(method: str, url: str, **kwargs: Any) -> tuple[int, str]:
    status, _, text = await raw(method, url, **kwargs)
    return status, text


async def wait_until_next(url: str, seq: int) -> None:
    """Poll ``GET /next`` until the channel's next seq is ``seq`` (the server saw a first byte)."""
    while (await raw("GET", f"{url}/next"))[2] != str(seq):  # noqa: ASYNC110 - the state is on the server
        await asyncio.sleep(0.02)


async def publish_until(pub: TricklePublisher, waiting: asyncio.Future[Any], data: Callable[[int], bytes]) -> None:
    """Publish segments (``data(seq)``) until ``waiting`` is done. A subscriber's request may reach the server
    after a segment it was meant to wait for has started; it then waits for the next one."""
    for _ in range(20):
        await step(pub.write(data(pub.seq)))
        await asyncio.wait({waiting}, timeout=1.0)
        if waiting.done():
            return
    raise AssertionError("the subscriber never got a segment")


# -- both servers ---------------------------------------------------------------------------------------


def test_segment_streams_to_subscriber_before_publisher_finishes_it(server: Server) -> None:
    async def scenario() -> list[str]:
        url = server.url("through")
        await server.create(url)
        events: list[str] = []
        async with TricklePublisher(url) as pub, TrickleSubscriber(url, start_seq=0) as sub:
            first_chunk = asyncio.Event()
            chunks: list[bytes] = []

            async def read() -> None:
                segment = await step(sub.next())
                assert segment is not None and segment.seq == 0
                async for chunk in segment:
                    chunks.append(chunk)
                    if not first_chunk.is_set():
                        events.append("subscriber got first bytes")
                        first_chunk.set()
                events.append("subscriber got end")

            reader = asyncio.ensure_future(read())
            async with pub.segment() as seg:
                await seg.write(b"first-")
                events.append("publisher wrote first bytes")
                await step(first_chunk.wait())  # the segment is still open here
                await seg.write(b"second")
                events.append("publisher ends segment")
            await step(reader)
        assert b"".join(chunks) == b"first-second"
        return events

    assert run(scenario()) == [
        "publisher wrote first bytes",
        "subscriber got first bytes",
        "publisher ends segment",
        "subscriber got end",
    ]


def test_late_subscriber_gets_the_segment_from_its_first_byte(server: Server) -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        url = server.url("late")
        await server.create(url)
        async with TricklePublisher(url) as pub, TrickleSubscriber(url, start_seq=-2) as late:
            seg = pub.segment()
            await seg.write(b"early")
            await step(wait_until_next(url, 1))  # the server holds "early": segment 0 is being written
            segment = await step(late.next())  # joins mid-segment, at the segment being written (-2)
            assert segment is not None
            reading = asyncio.ensure_future(segment.read())
            await seg.write(b"+late")
            await step(seg.close())
            body = await step(reading)
            async with TrickleSubscriber(url, start_seq=0) as after:  # after the segment ended
                again = await step(after.next())
                assert again is not None
                return body, await step(again.read()), segment.seq

    body, again, seq = run(scenario())
    assert (body, again, seq) == (b"early+late", b"early+late", 0)


def test_too_old_seq_is_470_and_subscriber_jumps_to_latest(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("old")
        await server.create(url)
        async with TricklePublisher(url) as pub:
            for i in range(7):
                await step(pub.write(f"s{i}".encode()))
            status, headers, text = await raw("GET", f"{url}/0")
            assert status == 470 and text == "Entry not found"
            assert headers["Lp-Trickle-Latest"] == "7" and headers["Lp-Trickle-Seq"] == "0"
            status, headers, text = await raw("GET", f"{url}/4")  # still in the ring
            assert (status, text, headers["Lp-Trickle-Seq"], headers["Lp-Trickle-Latest"]) == (200, "s4", "4", "7")
            async with TrickleSubscriber(url, start_seq=0) as sub:
                waiting = asyncio.ensure_future(sub.next())  # 470, then waits at the live edge (seq 7)
                await publish_until(pub, waiting, lambda seq: f"s{seq}".encode())
                segment = waiting.result()
                assert segment is not None and segment.seq >= 7
                assert await step(segment.read()) == f"s{segment.seq}".encode()

    run(scenario())


def test_minus_one_waits_for_the_next_segment_and_next_reports_it(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("next")
        await server.create(url, "application/json")
        async with TricklePublisher(url, "application/json") as pub:
            await step(pub.write(b'{"n":0}'))
            await step(pub.write(b'{"n":1}'))
            status, headers, text = await raw("GET", f"{url}/next")
            assert (status, text, headers["Lp-Trickle-Latest"]) == (200, "2", "2")
            async with TrickleSubscriber(url, start_seq=-1) as sub:
                waiting = asyncio.ensure_future(sub.next())  # waits for the next segment written (seq 2)
                await publish_until(pub, waiting, lambda seq: json.dumps({"n": seq}).encode())
                segment = waiting.result()
                assert segment is not None and segment.seq >= 2
                assert segment.content_type == "application/json"
                assert json.loads(await step(segment.read())) == {"n": segment.seq}
            # A publish to -1 goes to the next seq, and the answer says which.
            next_seq = pub.seq
            status, headers, _ = await raw("POST", f"{url}/-1", data=b"{}")
            assert (status, headers["Lp-Trickle-Seq"]) == (200, str(next_seq))

    run(scenario())


def test_a_waiting_subscriber_asks_again_and_still_gets_the_segment(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("refresh")
        await server.create(url)
        async with TricklePublisher(url) as pub, TrickleSubscriber(url, start_seq=-1, refresh_after=0.1) as sub:
            waiting = asyncio.ensure_future(sub.next())
            await asyncio.sleep(0.5)  # the GET is re-issued every 0.1 s meanwhile
            assert not waiting.done()
            await publish_until(pub, waiting, lambda seq: f"late news {seq}".encode())
            segment = waiting.result()
            assert segment is not None
            assert await step(segment.read()) == f"late news {segment.seq}".encode()

    run(scenario())


def test_channel_keeps_its_mime_type(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("mime")
        await server.create(url, "application/json")
        # A publisher's different Content-Type does not change the channel's.
        async with TricklePublisher(url, "video/MP2T", delete_on_close=False) as pub:
            await step(pub.write(b"{}"))
        status, headers, _ = await raw("GET", f"{url}/0")
        assert (status, headers["Content-Type"]) == (200, "application/json")
        await raw("DELETE", url)

    run(scenario())


def test_deleting_the_channel_ends_subscribers_and_publishers(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("delete")
        await server.create(url)
        pub = TricklePublisher(url, delete_on_close=False)
        async with pub, TrickleSubscriber(url, start_seq=-1) as sub:
            await step(pub.write(b"zero"))
            waiting = asyncio.ensure_future(sub.next())  # waits for seq 1
            await asyncio.sleep(0.2)
            assert (await raw("DELETE", url))[0] == 200
            assert await step(waiting) is None
            # A request waiting at the server is answered Lp-Trickle-Closed; one arriving after the delete, 404.
            assert sub.end in ("closed", "not found")
            assert (await raw("GET", f"{url}/0"))[0] == 404
            assert await status_text("DELETE", url) == (400, "Invalid stream\n")
            if not server.autocreate:  # (with autocreate a publish makes the channel again)
                with pytest.raises(ChannelNotFoundError):
                    await step(pub.write(b"one"))
                assert (await raw("POST", f"{url}/0", data=b"x"))[0] == 404

    run(scenario())


def test_closing_a_publisher_while_it_connects_leaves_no_half_made_connection(server: Server) -> None:
    """A segment is opened (its request and the next one's start connecting), then the publisher is closed
    after a few turns of the event loop, each time in a loop of its own that ends right after: whatever
    connection was being made must be closed, not left to asyncio to report when it is garbage-collected."""
    reported: list[str] = []

    async def close_while_connecting(turns: int) -> None:
        url = server.url("closing")
        await server.create(url)
        pub = TricklePublisher(url, headers=server.create_headers, delete_on_close=False)
        seg = pub.segment()
        await seg.write(b"never sent")
        for _ in range(turns):
            await asyncio.sleep(0)
        await step(pub.close())

    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: reported.append(f"{unraisable.exc_value!r} in {unraisable.object!r}")
    try:
        for attempt in range(60):
            run(close_while_connecting(attempt % 6))
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert reported == []


def test_autocreate_makes_the_channel_on_first_publish(standalone: Server) -> None:
    async def scenario() -> None:
        url = standalone.url("auto")
        async with TricklePublisher(url, "application/json", delete_on_close=False) as pub:
            assert await step(pub.write(b"{}")) == 0
        status, headers, text = await raw("GET", f"{url}/0")
        assert (status, headers["Content-Type"], text) == (200, "application/json", "{}")
        await raw("DELETE", url)

    run(scenario())


def test_deleting_a_segment_wakes_its_readers(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("delseq")
        await server.create(url)
        async with TricklePublisher(url) as pub:
            await step(pub.write(b"zero"))
            reading = asyncio.ensure_future(raw("GET", f"{url}/1"))  # makes segment 1 and waits for it
            for _ in range(250):  # 400 until that request reached the server
                if (await raw("DELETE", f"{url}/1"))[0] == 200:
                    break
                assert not reading.done()
                await asyncio.sleep(0.02)
            status, headers, _ = await step(reading)
            assert status == 470 and headers["Lp-Trickle-Seq"] == "1"
            assert await status_text("DELETE", f"{url}/9") == (400, "Nonexistent segment\n")

    run(scenario())


def test_reset_releases_readers_stuck_on_an_older_segment(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("reset")
        await server.create(url)
        async with TricklePublisher(url, delete_on_close=False) as old:
            await step(old.write(b"zero"))
            stuck = old.segment()
            await stuck.write(b"never finished")
            async with TrickleSubscriber(url, start_seq=1) as sub:
                segment = await step(sub.next())
                assert segment is not None and segment.seq == 1
                reading = asyncio.ensure_future(segment.read())
                await asyncio.sleep(0.2)
                assert not reading.done()
                # A restarted publisher asks for the live edge and sends Lp-Trickle-Reset with its first segment.
                async with TricklePublisher(url, start_seq=-1) as restarted:
                    assert restarted.seq == 2
                    await step(restarted.write(b"two"))
                    assert await step(reading) == b"never finished"
            await stuck.abandon()

    run(scenario())


def test_unknown_channel_and_bad_seq(server: Server) -> None:
    async def scenario() -> None:
        url = server.url("unknown")
        assert await status_text("GET", f"{url}/0") == (404, "Stream not found\n")
        assert (await raw("GET", f"{url}/next"))[0] == 404
        assert (await raw("DELETE", f"{url}/0"))[0] == 404
        await server.create(url)
        assert await status_text("GET", f"{url}/abc") == (400, "Invalid idx\n")
        assert await status_text("POST", f"{url}/abc", data=b"x") == (400, "Invalid idx\n")
        assert await status_text("POST", f"{url}/-2", data=b"x") == (400, "Invalid idx\n")
        assert await status_text("GET", f"{url}/-3") == (400, "Invalid idx\n")
        async with TrickleSubscriber(url.replace("unknown", "missing")) as sub:
            assert await step(sub.next()) is None and sub.end == "not found"
        await raw("DELETE", url)

    run(scenario())


# -- one server each -----------------------------------------------------------------------------------


def test_orchestrator_creates_channels_only_with_its_secret(orchestrator: Server) -> None:
    async def scenario() -> None:
        url = orchestrator.url("secret")
        assert await status_text("POST", url) == (404, "Stream not found\n")  # no autocreate
        assert (await raw("POST", f"{url}/0", data=b"x"))[0] == 404
        assert (await raw("POST", url, headers={"Authorization": "wrong"}))[0] == 403
        assert (await raw("POST", url, headers={"Authorization": "s", "Expect-Content": "video/MP2T"}))[0] == 200
        assert (await raw("POST", f"{url}/0", data=b"x"))[0] == 200
        await raw("DELETE", url)

    run(scenario())


def test_idle_channel_is_swept(tmp_path: Path) -> None:
    proc = StandaloneProcess(tmp_path / "serve.log", idle_timeout=IDLE_TIMEOUT)
    try:
        proc.wait_ready()
        assert run(idle_scenario(Server("idle", f"http://127.0.0.1:{proc.port}", {}, autocreate=True))) == 404
    finally:
        assert proc.stop() == 0, proc.log_path.read_text()
    assert "trickle channel idle; deleted" in proc.log_path.read_text()


async def idle_scenario(server: Server) -> int:
    """A channel nobody publishes to is deleted after the idle timeout; its waiting subscriber ends."""
    url = server.url("idle")
    await server.create(url)
    async with TrickleSubscriber(url, start_seq=-1) as sub:
        waiting = asyncio.ensure_future(sub.next())
        for _ in range(100):  # idle timeout 1.5 s, sweep every 0.25 s
            status = (await raw("GET", f"{url}/next"))[0]
            if status == 404:
                break
            await asyncio.sleep(0.1)
        assert await step(waiting) is None and sub.end in ("closed", "not found")
    return status


def test_oversize_segment_is_cut_off_and_the_next_one_flows(standalone: Server) -> None:
    async def scenario() -> None:
        url = standalone.url("big")
        await standalone.create(url)
        async with TricklePublisher(url) as pub, TrickleSubscriber(url, start_seq=0) as sub:
            reading = asyncio.ensure_future(sub.next())
            # The server cuts the segment off at 256 KiB: the publisher gets 413 (or the connection closed
            # under it), and the reader's body ends short, as an error, never as a complete-looking segment.
            with pytest.raises(TrickleError):
                async with pub.segment() as seg:
                    for _ in range(64):
                        await seg.write(b"x" * 16384)
            segment = await step(reading)
            assert segment is not None and segment.seq == 0
            with pytest.raises(SegmentCutOffError):
                await step(segment.read())
            assert await step(pub.write(b"small")) == 1
            following = await step(sub.next())
            assert following is not None and following.seq == 1
            assert await step(following.read()) == b"small"

    run(scenario())


def test_clients_give_up_on_an_unreachable_server() -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{free_port()}/nobody"
        async with TricklePublisher(url, retry_delay=0.01) as pub:
            with pytest.raises(TrickleUnreachableError):
                await step(pub.write(b"x"))
        async with TrickleSubscriber(url, retry_delay=0.01) as sub:
            with pytest.raises(TrickleUnreachableError):
                await step(sub.next())

    run(scenario())


def test_segment_is_sent_again_when_its_connection_could_not_be_made(standalone: Server) -> None:
    """Nothing listens at first; a relay to the server starts while the publisher waits to retry."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", server_port)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    async def scenario() -> bytes:
        port = free_port()
        url = standalone.url("retry").replace(f":{server_port}/", f":{port}/")
        async with TricklePublisher(url, retry_delay=1.0, delete_on_close=False) as pub:
            sending = asyncio.ensure_future(pub.write(b"sent on the second try"))
            await asyncio.sleep(0.3)  # the first connection was refused by now; the retry comes at 1 s
            listener = await asyncio.start_server(relay, "127.0.0.1", port)
            async with listener:
                assert await step(sending) == 0
        status, _, text = await raw("GET", f"{url.replace(f':{port}/', f':{server_port}/')}/0")
        assert status == 200
        return text.encode()

    server_port = int(standalone.base.rsplit(":", 1)[1])
    assert run(scenario()) == b"sent on the second try"


def test_publish_and_subscribe_commands(standalone: Server, tmp_path: Path) -> None:
    url = standalone.url("cli")
    source = tmp_path / "in.bin"
    source.write_bytes(bytes(range(250)) * 1000)  # 250,000 bytes: 3 segments of at most 100,000
    copy = tmp_path / "out.bin"
    run(standalone.create(url))
    args = ["trickle", "subscribe", url, "--start-seq", "0", "--max-segments", "3", "--output", str(copy)]
    with subprocess.Popen([*LPNODE, *args], stderr=subprocess.PIPE, text=True, env=child_env()) as subscriber:
        try:
            published = run_cli("trickle", "publish", url, str(source), "--segment-bytes", "100000", "--keep")
            assert published.returncode == 0, published.stderr
            assert f"published 3 segments (250000 bytes) to {url}" in published.stderr
            _, err = subscriber.communicate(timeout=60)
        finally:
            subscriber.kill()
    assert subscriber.returncode == 0, err
    assert "received 3 segments (250000 bytes)" in err
    assert copy.read_bytes() == source.read_bytes()
    run(raw("DELETE", url))
    gone = run_cli("trickle", "subscribe", url, timeout=60)
    assert gone.returncode == 2 and gone.stderr.startswith("lpnode: error: ") and "no such channel" in gone.stderr


def test_serve_refuses_a_port_in_use(standalone: Server) -> None:
    port = standalone.base.rsplit(":", 1)[1]
    result = run_cli("trickle", "serve", "--listen", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"lpnode: error: cannot listen on 127.0.0.1:{port}")


def test_pytrickle_publishes_and_subscribes_against_our_server(standalone: Server) -> None:
    python = pytrickle_python()
    result = subprocess.run(
        [str(python), "-c", PYTRICKLE_SCRIPT, standalone.url("pytrickle")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["version"] == "0.1.6"
    # Streaming through: pytrickle's subscriber read the first bytes while the segment was open.
    assert (out["first_seq"], out["first_chunk"], out["first_rest"]) == (0, "zero-a", "-b")
    assert out["segments"] == [[1, "segment-1"], [2, "segment-2"]]
    seq, text = out["jumped"]  # 470 on an evicted seq, then the live edge (Lp-Trickle-Latest)
    assert seq >= 8 and text == f"segment-{seq}"
    assert out["delete_status"] == 200 and out["ended"] is True
