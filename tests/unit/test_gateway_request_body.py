"""The gateway reads request bodies as they stream in: an upload over the limit is refused as soon as it passes
it (not after reading it whole), and a large multipart upload is held in memory about twice (the file the
checks read, the body sent on), not the five copies reading, parsing and re-encoding it whole used to make."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lpnode.gateway import api
from lpnode.gateway.api import PublicApi
from lpnode.gateway.forward import Forwarder, Job
from lpnode.gateway.job_wrapper import JobRecord, JobWrapper
from lpnode.serving import QuietServer, bind_socket
from lpnode.uvicorn_config import uvicorn_config


class Sent:
    """A forwarder that keeps what would have gone to an orchestrator and answers 200."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def run(self, hop: Job, request: Any, deadline: float, job: JobRecord) -> Response:
        self.jobs.append(hop)
        return JSONResponse({"images": []})


def public_api(sent: Sent) -> PublicApi:
    return PublicApi(cast(Forwarder, sent), lambda pipeline: "default/model", JobWrapper(), timeout=30)


@contextlib.asynccontextmanager
async def gateway(sent: Sent) -> AsyncIterator[int]:
    app = Starlette(routes=[Route("/text-to-image", public_api(sent).handle, methods=["POST"])])
    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(uvicorn_config(app, loop="none", log_config=None, lifespan="off"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


def test_a_chunked_upload_over_the_limit_is_refused_as_soon_as_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "MAX_BODY_BYTES", 1024 * 1024)
    total = 64 * 1024 * 1024
    chunk = b'{"prompt": "' + b"a" * 65536

    async def main() -> tuple[bytes, int]:
        async with gateway(Sent()) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /text-to-image HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            sent = 0

            async def send() -> None:
                nonlocal sent
                with contextlib.suppress(ConnectionError):
                    while sent < total:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                        sent += len(chunk)
                    writer.write(b"0\r\n\r\n")

            sending = asyncio.ensure_future(send())
            async with asyncio.timeout(20):
                answer = await reader.readuntil(b"\r\n\r\n")
            answered_at = sent
            sending.cancel()
            writer.close()
            return answer, answered_at

    answer, answered_at = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert answered_at < 16 * 1024 * 1024, f"413 only after {answered_at >> 20} MiB of a 1 MiB limit were sent"


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    boundary = "testboundary1234"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
    )
    return b"".join([*parts, file, f"\r\n--{boundary}--\r\n".encode()]), f"multipart/form-data; boundary={boundary}"


def request(path: str, body: bytes, content_type: str) -> Request:
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    del body

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(b"content-type", content_type.encode())], "scheme": "http", "server": ("gw", 80),
        "client": ("127.0.0.1", 1), "root_path": "",
    }  # fmt: skip
    return Request(scope, receive)


def small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("named_model", [True, False], ids=["model named", "default model filled in"])
def test_a_large_multipart_upload_is_held_in_memory_about_twice(named_model: bool) -> None:
    size = 24 * 1024 * 1024
    file = small_png() + os.urandom(size)  # a readable image header, then bulk
    fields = {"prompt": "a cat", **({"model_id": "some/model"} if named_model else {})}
    body, content_type = multipart(fields, file)
    del file
    sent = Sent()

    async def main() -> Response:
        req = request("/image-to-image", body, content_type)
        tracemalloc.start()
        try:
            response = await public_api(sent).handle(req)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        main.peak = peak  # type: ignore[attr-defined]
        return response

    response = asyncio.run(main())
    assert response.status_code == 200, response.body
    peak = main.peak  # type: ignore[attr-defined]
    forwarded = sent.jobs[0]
    assert len(forwarded.body) >= size
    if named_model:
        assert forwarded.body == body  # the caller's body, as sent
    else:
        assert b'name="model_id"\r\n\r\ndefault/model' in forwarded.body
    assert peak < 2.5 * size, f"reading a {size >> 20} MiB upload peaked at {peak / size:.1f}x its size"


def test_the_byoc_kit_refuses_a_chunked_body_over_its_limit_as_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpnode.byoc import kit

    monkeypatch.setattr(kit, "MAX_BODY_BYTES", 1024 * 1024)
    app = kit.ByocApp("echo", load=lambda: "model")
    app.job()(lambda inputs: {"n": len(inputs)})
    app._state = "OK"  # loaded: the lifespan is not what this test is about
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1024 * 1024
        return {"type": "http.request", "body": b" " * (1024 * 1024), "more_body": read < 64 * 1024 * 1024}

    async def main() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            messages.append(message)

        scope = {
            "type": "http", "method": "POST", "path": "/v1/echo", "raw_path": b"/v1/echo", "query_string": b"",
            "headers": [(b"content-type", b"application/json")], "scheme": "http", "server": ("k", 80),
            "client": ("127.0.0.1", 1), "root_path": "",
        }  # fmt: skip
        await app.asgi()(scope, receive, send)
        return messages

    messages = asyncio.run(main())
    assert messages[0]["status"] == 413, messages
    assert read <= 2 * 1024 * 1024, f"read {read >> 20} MiB before refusing"
