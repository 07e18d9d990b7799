"""The BYOC kit's container contract, in process (Starlette's test client)."""

from __future__ import annotations

import threading

from starlette.testclient import TestClient

from lpnode.byoc.kit import ByocApp, UploadedFile


def make_app(release: threading.Event, token: str = "") -> ByocApp:
    app = ByocApp("echo", load=lambda: release.wait(10) and "model", token=token)

    @app.job()
    def echo(inputs: object) -> object:
        return {"echo": inputs, "model": app.loaded}

    @app.job("upload")
    def upload(inputs: dict[str, object]) -> bytes:
        image = inputs["image"]
        assert isinstance(image, UploadedFile)
        return image.data[::-1]

    @app.job("count")
    def count(inputs: dict[str, int]) -> object:
        yield from ({"n": i} for i in range(inputs["n"]))

    @app.job("picky")
    async def picky(inputs: dict[str, object]) -> object:
        if "x" not in inputs:
            raise ValueError("x is required")
        raise RuntimeError("boom")

    return app


def test_health_is_503_until_loaded_and_jobs_wait_for_it() -> None:
    release = threading.Event()
    with TestClient(make_app(release)) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/health").json() == {"status": "LOADING"}
        early = client.post("/v1/echo", json={})
        assert early.status_code == 503 and early.headers["Retry-After"] == "2"
        release.set()
        for _ in range(100):
            if client.get("/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert client.get("/health").json() == {"status": "OK"}
        for path in ("/v1/echo", "/echo", "/"):
            assert client.post(path, json={"a": 1}).json() == {"echo": {"a": 1}, "model": "model"}
        assert client.post("/v1/echo").json()["echo"] == {}


def test_inputs_and_outputs() -> None:
    release = threading.Event()
    release.set()
    with TestClient(make_app(release)) as client:
        reversed_ = client.post("/v1/upload", files={"image": ("a.bin", b"abc", "application/octet-stream")})
        assert reversed_.content == b"cba" and reversed_.headers["content-type"] == "application/octet-stream"
        events = client.post("/count", json={"n": 2}).text
        assert events == 'data: {"n": 0}\n\ndata: {"n": 1}\n\ndata: [DONE]\n\n'
        bad = client.post("/picky", json={})
        assert bad.status_code == 400 and bad.json() == {"error": {"message": "x is required"}}
        failed = client.post("/picky", json={"x": 1})
        assert failed.status_code == 500 and "RuntimeError" in failed.json()["error"]["message"]
        assert client.post("/echo", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_a_token_guards_jobs_but_not_health() -> None:
    release = threading.Event()
    release.set()
    with TestClient(make_app(release, token="t0k")) as client:
        assert client.post("/echo", json={}).status_code == 401
        assert client.post("/echo", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post("/echo", json={}, headers={"Authorization": "Bearer t0k"}).status_code == 200
        assert client.get("/health").status_code == 200


def test_a_failed_load_is_reported() -> None:
    def load() -> None:
        raise OSError("weights missing")

    app = ByocApp("x", load=load)
    app.add_job("x", lambda inputs: inputs)
    with TestClient(app) as client:
        for _ in range(100):
            if client.get("/health").json()["status"] != "LOADING":
                break
            threading.Event().wait(0.05)
        health = client.get("/health")
        assert health.status_code == 503 and health.json() == {"status": "ERROR", "error": "OSError: weights missing"}
        assert "failed to load" in client.post("/x", json={}).json()["error"]["message"]
