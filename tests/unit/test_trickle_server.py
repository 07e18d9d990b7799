"""The trickle server's ASGI app driven in-process, where the order of events is exact: which answer goes out
when, and with which headers."""

from __future__ import annotations

import asyncio
from typing import Any

from lpnode.trickle import TrickleServer


class Exchange:
    """One request to the ASGI app: feed its body, read what it sent."""

    def __init__(self, server: TrickleServer, method: str, path: str, headers: dict[str, str] | None = None) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        }
        self.task = asyncio.ensure_future(server(scope, self.incoming.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def body(self, data: bytes, more: bool = True) -> None:
        self.incoming.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def disconnect(self) -> None:
        self.incoming.put_nowait({"type": "http.disconnect"})

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def headers(self) -> dict[str, str]:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return {k.decode(): v.decode() for k, v in starts[0]["headers"]} if starts else {}

    @property
    def data(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def ended(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body", False) for m in self.sent)


async def settle() -> None:
    """Let every ready task run (no I/O is involved: a few turns of the loop are enough)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_read_answers_only_with_the_first_byte_and_streams_the_rest() -> None:
    async def scenario() -> None:
        server = TrickleServer()
        server.create_channel("c", "video/MP2T")
        reader = Exchange(server, "GET", "/c/0")
        reader.body(b"", more=False)
        await settle()
        assert reader.sent == []  # waiting, no headers yet

        writer = Exchange(server, "POST", "/c/0")
        writer.body(b"ab")
        await settle()
        assert reader.status == 200 and reader.data == b"ab" and not reader.ended
        assert reader.headers["lp-trickle-seq"] == "0" and reader.headers["content-type"] == "video/MP2T"
        assert "lp-trickle-latest" not in reader.headers  # it equals the seq read
        assert writer.sent == []  # the publisher's answer comes at the end of its body

        writer.body(b"cd", more=False)
        await settle()
        assert reader.data == b"abcd" and reader.ended
        assert writer.status == 200 and writer.headers["lp-trickle-seq"] == "0"
        await asyncio.gather(reader.task, writer.task)
        await server.close()

    asyncio.run(scenario())


def test_a_waiting_read_is_told_the_channel_closed() -> None:
    async def scenario() -> None:
        server = TrickleServer()
        server.create_channel("c")
        reader = Exchange(server, "GET", "/c/-1")
        reader.body(b"", more=False)
        await settle()
        assert reader.sent == []
        server.delete_channel("c")
        await settle()
        assert reader.status == 200 and reader.data == b""
        assert reader.headers["lp-trickle-closed"] == "terminated" and reader.headers["lp-trickle-seq"] == "0"
        await reader.task
        await server.close()

    asyncio.run(scenario())


def test_a_preconnected_publish_is_answered_when_its_segment_is_closed() -> None:
    async def scenario() -> None:
        server = TrickleServer()
        channel = server.create_channel("c")
        writer = Exchange(server, "POST", "/c/0")
        await settle()
        assert writer.sent == []
        assert channel.close_segment(0)
        await settle()
        assert writer.status == 200
        assert writer.headers["lp-trickle-seq"] == "0" and writer.headers["connection"] == "close"
        assert "lp-trickle-closed" not in writer.headers
        assert channel.next_write == 1  # moved on anyway, so the publisher's next seq is accepted
        await writer.task
        await server.close()

    asyncio.run(scenario())


def test_an_emptied_segment_is_470_with_the_live_edge() -> None:
    async def scenario() -> None:
        server = TrickleServer()
        channel = server.create_channel("c")
        reader = Exchange(server, "GET", "/c/0")
        reader.body(b"", more=False)
        await settle()
        channel.close_segment(0)
        await settle()
        assert reader.status == 470
        assert reader.headers["lp-trickle-seq"] == "0" and reader.headers["lp-trickle-latest"] == "0"
        await reader.task
        await server.close()

    asyncio.run(scenario())


def test_a_publisher_going_away_cuts_its_readers_off() -> None:
    async def scenario() -> None:
        server = TrickleServer()
        server.create_channel("c")
        writer = Exchange(server, "POST", "/c/0")
        writer.body(b"partial")
        reader = Exchange(server, "GET", "/c/0")
        reader.body(b"", more=False)
        await settle()
        assert reader.data == b"partial"
        writer.disconnect()
        await settle()
        await asyncio.gather(reader.task, writer.task)
        # The read's body was never ended: the HTTP server drops the response, so the reader sees it cut off.
        assert not reader.ended
        await server.close()

    asyncio.run(scenario())
