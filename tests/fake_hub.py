"""A stand-in for the Hugging Face Hub on loopback: the Hub cannot be reached from the test machines.

It answers the calls ``huggingface_hub`` makes to fetch a model (``HF_ENDPOINT=hub.url``): repo info, the
recursive file tree, and ``HEAD``/``GET`` of ``/<repo>/resolve/<commit>/<file>``, with the Hub's error
headers for a missing repo (``X-Error-Code: RepoNotFound``, 404) and a gated one (``GatedRepo``, 403 unless
the request carries the repo's token). Files named in ``slow`` are sent in small pieces with pauses, so a
test can interrupt a download mid-way. Every request is recorded in ``requests`` as ``(method, path)``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: dict[str, str] = {}  # repo id -> the token that opens it
        self.slow: set[str] = set()  # "org/name/path" of files sent slowly
        self.slow_chunk = 4096
        self.slow_pause = 0.05
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes], *, token: str = "") -> None:
        self.repos[repo_id] = files
        if token:
            self.gated[repo_id] = token

    def gets(self) -> list[str]:
        """The paths of every file download (``GET .../resolve/...``) so far."""
        with self._lock:
            return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool = True) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, send_body: bool) -> None:
                body = json.dumps({"error": code}).encode()
                headers = {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}
                self._send(status, body, headers, send_body)

            def _repo(self, repo_id: str, send_body: bool) -> dict[str, bytes] | None:
                if repo_id not in hub.repos:
                    self._error(404, "RepoNotFound", send_body)
                    return None
                token = hub.gated.get(repo_id)
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self._error(403, "GatedRepo", send_body)
                    return None
                return hub.repos[repo_id]

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with hub._lock:
                    hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id = "/".join(parts[2:4])
                    files = self._repo(repo_id, body)
                    if files is None:
                        return
                    info: object
                    if parts[4] == "revision":
                        info = {"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                    else:
                        info = [
                            {"type": "file", "path": f, "size": len(data), "oid": _oid(data)}
                            for f, data in files.items()
                        ]
                    self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                    return
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
                    files = self._repo(repo_id, body)
                    if files is None:
                        return
                    if filename not in files:
                        self._error(404, "EntryNotFound", body)
                        return
                    data = files[filename]
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_oid(data)}"'}
                    if not body or f"{repo_id}/{filename}" not in hub.slow:
                        self._send(200, data, headers, body)
                        return
                    self.send_response(200)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for start in range(0, len(data), hub.slow_chunk):
                        self.wfile.write(data[start : start + hub.slow_chunk])
                        self.wfile.flush()
                        time.sleep(hub.slow_pause)
                    return
                self._error(404, "NotFound", body)

        return Handler

    @contextmanager
    def running(self) -> Iterator[FakeHub]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
