"""Result files of AI jobs: saved under their own names, served at /stream/<request>/<name>, swept when expired."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import uvicorn
from starlette.applications import Starlette

from lpnode.results import (
    NOT_FOUND_TEXT,
    ResultStore,
    content_type,
    decode_data_url,
    new_request_id,
    stream_route,
)

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> ResultStore:
    return ResultStore(tmp_path / "results", ttl_seconds=600.0, clock=clock)


@pytest.fixture
def serve() -> Iterator[Callable[[ResultStore], str]]:
    """Serve a store's stream route with uvicorn on a free loopback port; returns the base URL."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(store: ResultStore) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        app = Starlette(routes=[stream_route(store)])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)


def test_request_ids_are_random_url_safe_hex() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert re.fullmatch(r"[0-9a-f]{16}", ResultStore.new_request_id())


def test_several_images_of_one_response_get_their_own_files(store: ResultStore) -> None:
    request_id = new_request_id()
    images = [PNG_1X1 + bytes([i]) for i in range(5)]
    names = [store.save_data_url(request_id, data_url("image/png", image)) for image in images]
    assert len(set(names)) == 5
    assert all(re.fullmatch(r"[0-9a-f]{16}\.png", name) for name in names)
    for name, image in zip(names, images, strict=True):
        path = store.path(request_id, name)
        assert path is not None and path.read_bytes() == image
    # Only the finished files are in the directory: no temp files are left behind.
    assert sorted(os.listdir(store.root / request_id)) == sorted(names)


@pytest.mark.parametrize(
    ("mime", "extension"),
    [
        ("image/png", "png"),
        ("image/jpeg", "jpg"),
        ("image/webp", "webp"),
        ("audio/wav", "wav"),
        ("audio/x-wav", "wav"),
        ("audio/wave", "wav"),
        ("audio/mpeg", "mp3"),
        ("video/mp4", "mp4"),
        ("IMAGE/PNG", "png"),
        ("application/x-unknown", "bin"),
    ],
)
def test_extension_comes_from_the_mime_type(store: ResultStore, mime: str, extension: str) -> None:
    name = store.save_data_url("req", data_url(mime, b"payload"))
    assert name.endswith(f".{extension}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/a.png", "expected a data: URL"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png,plain", "must be base64-encoded"),
        ("data:image/png;base64,***", "not valid base64"),
        ("data:image/png;base64,", "has no data"),
    ],
)
def test_bad_data_urls_say_what_is_wrong(store: ResultStore, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        store.save_data_url("req", url)
    assert not (store.root / "req").exists() or not os.listdir(store.root / "req")


def test_long_bad_data_urls_are_shortened_in_the_message() -> None:
    with pytest.raises(ValueError) as err:
        decode_data_url("data:image/png;base64," + "!" * 10_000)
    assert len(str(err.value)) < 200


def test_decoding_keeps_the_mime_type_and_the_bytes() -> None:
    assert decode_data_url(data_url("audio/wav", b"RIFF....")) == ("audio/wav", b"RIFF....")
    assert decode_data_url("data:;base64,AAE=") == ("application/octet-stream", b"\x00\x01")


@pytest.mark.parametrize("request_id", ["..", ".", "../x", "a/b", "a\\b", "", "x" * 65, "-x", "é", "a\x00"])
def test_traversal_request_ids_are_rejected(store: ResultStore, request_id: str) -> None:
    with pytest.raises(ValueError, match="invalid request id"):
        store.save(request_id, b"data", "png")
    assert store.path(request_id, "0123456789abcdef.png") is None


@pytest.mark.parametrize("extension", ["", "../png", "p/ng", "PNG", "toolongext", "png\x00"])
def test_bad_extensions_are_rejected(store: ResultStore, extension: str) -> None:
    with pytest.raises(ValueError, match="invalid file extension"):
        store.save("req", b"data", extension)


def test_names_that_could_escape_are_not_found(store: ResultStore, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    store.save("req", b"data", "png")
    for name in ("../../secret.txt", "..", ".", "/etc/passwd", "secret.txt", "0123456789abcdef.png/.."):
        assert store.path("req", name) is None


def test_missing_files_are_none(store: ResultStore) -> None:
    assert store.path("nosuchrequest", "0123456789abcdef.png") is None
    store.save("req", b"data", "png")
    assert store.path("req", "0123456789abcdef.png") is None


def test_expired_requests_are_not_served_and_are_swept(store: ResultStore, clock: FakeClock) -> None:
    old = store.save("old", b"old", "png")
    clock.now += 400
    new = store.save("new", b"new", "png")
    os.utime(store.root / "new", (clock.now, clock.now))
    clock.now += 300  # "old" is 700 s old, "new" 300 s
    assert store.path("old", old) is None
    assert store.path("new", new) is not None
    assert store.sweep() == 1
    assert not (store.root / "old").exists()
    assert store.path("new", new) is not None
    assert store.sweep() == 0


def test_sweep_goes_by_directory_mtime(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, ttl_seconds=600.0)
    stale = store.save("stale", b"x", "wav")
    fresh = store.save("fresh", b"x", "wav")
    long_ago = time.time() - 3600
    os.utime(tmp_path / "stale", (long_ago, long_ago))
    assert store.sweep() == 1
    assert store.path("stale", stale) is None and store.path("fresh", fresh) is not None


def test_sweep_without_a_root_directory_is_a_no_op(tmp_path: Path) -> None:
    assert ResultStore(tmp_path / "never-created").sweep() == 0


def test_sweep_does_not_raise_when_files_vanish_meanwhile(
    store: ResultStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for request_id in ("a", "b"):
        for _ in range(3):
            store.save(request_id, b"x", "png")
    clock.now += 601
    real_unlink = os.unlink

    def unlink_after_someone_else_removed_a(path: str | os.PathLike[str]) -> None:
        other = store.root / "a"
        if other.exists():
            for child in other.iterdir():
                real_unlink(child)
            other.rmdir()
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink_after_someone_else_removed_a)
    assert store.sweep() == 1
    assert os.listdir(store.root) == []


def test_sweeper_task_sweeps_periodically_until_cancelled(store: ResultStore, clock: FakeClock) -> None:
    async def scenario() -> None:
        store.save("expiring", b"x", "png")
        task = store.start_sweeper(0.01)
        clock.now += 601
        deadline = time.monotonic() + 5
        while (store.root / "expiring").exists():
            assert time.monotonic() < deadline, "the sweeper did not remove the expired request"
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_content_types_for_serving() -> None:
    assert content_type("0123456789abcdef.png") == "image/png"
    assert content_type("0123456789abcdef.jpg") == "image/jpeg"
    assert content_type("0123456789abcdef.webp") == "image/webp"
    assert content_type("0123456789abcdef.wav") == "audio/wav"
    assert content_type("0123456789abcdef.mp3") == "audio/mpeg"
    assert content_type("0123456789abcdef.mp4") == "video/mp4"
    assert content_type("0123456789abcdef.bin") == "application/octet-stream"


def test_stream_route_serves_each_saved_file(store: ResultStore, serve: Callable[[ResultStore], str]) -> None:
    base = serve(store)
    request_id = new_request_id()
    first = store.save_data_url(request_id, data_url("image/png", PNG_1X1))
    second = store.save_data_url(request_id, data_url("audio/wav", b"RIFFwave"))
    r = requests.get(f"{base}/stream/{request_id}/{first}", timeout=4)
    assert r.status_code == 200
    assert r.content == PNG_1X1
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "private, max-age=600"
    r = requests.get(f"{base}/stream/{request_id}/{second}", timeout=4)
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"RIFFwave", "audio/wav")


def test_stream_route_answers_head(store: ResultStore, serve: Callable[[ResultStore], str]) -> None:
    base = serve(store)
    name = store.save("req", PNG_1X1, "png")
    r = requests.head(f"{base}/stream/req/{name}", timeout=4)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(PNG_1X1))
    assert r.headers["content-type"] == "image/png"
    assert r.content == b""


def test_stream_route_404s_missing_invalid_and_expired_results(
    store: ResultStore, clock: FakeClock, serve: Callable[[ResultStore], str]
) -> None:
    base = serve(store)
    name = store.save("req", PNG_1X1, "png")
    for path in (
        "/stream/req/0123456789abcdef.png",
        "/stream/nosuch/0123456789abcdef.png",
        f"/stream/req/{name.upper()}",
    ):
        r = requests.get(base + path, timeout=4)
        assert (r.status_code, r.text) == (404, NOT_FOUND_TEXT), path
        assert r.headers["content-type"].startswith("text/plain")
    # Encoded slashes are decoded before routing, so these do not even reach the route.
    for path in ("/stream/req/..%2F..%2Fetc%2Fpasswd", f"/stream/..%2F/{name}", f"/stream/req%2F..%2F/{name}"):
        assert requests.get(base + path, timeout=4).status_code == 404, path
    assert requests.get(f"{base}/stream/req/{name}", timeout=4).status_code == 200
    clock.now += 601
    r = requests.get(f"{base}/stream/req/{name}", timeout=4)
    assert (r.status_code, r.text) == (404, NOT_FOUND_TEXT)
