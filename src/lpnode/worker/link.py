"""The worker's connection to its orchestrator: the ``RegisterAIWorker`` stream and HTTP calls back.

Orchestrators serve TLS with self-signed certificates and go-livepeer workers skip verification; grpcio
cannot, so each connection attempt pins the certificate the orchestrator presents
(:mod:`lpnode.protocol.tls_pinning`, as gateways do). A new attempt fetches it again, so an
orchestrator that made a new certificate is followed. The same certificate checks the HTTP calls to the
orchestrator (result uploads, input downloads); other hosts are checked against the system's CAs.
``http://`` orchestrators use plain h2c.

Errors: :class:`Refused` when the orchestrator refuses this worker for good (wrong secret, zero capacity,
a version it does not take); :class:`LinkLost` for anything worth retrying.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]

from lpnode.errors import LpnodeError
from lpnode.protocol.ai_worker import INVALID_SECRET, WORKER_ID_METADATA, ZERO_CAPACITY
from lpnode.protocol.lp_rpc_pb2 import NotifyAIJob, RegisterAIWorkerRequest
from lpnode.protocol.orchestrator_service import REGISTER_AI_WORKER
from lpnode.protocol.tls_pinning import grpc_target, pinned_channel, pinned_context

KEEPALIVE_MS = 30_000
"""gRPC keepalive pings on the stream, so a vanished orchestrator is noticed within about a minute."""


class Refused(LpnodeError):
    """The orchestrator will not take this worker; retrying cannot help."""


class LinkLost(LpnodeError):
    """The stream could not be opened or ended; worth retrying."""


class OrchestratorLink:
    """One orchestrator's address; :meth:`register` opens a stream, :meth:`ssl_for` checks HTTP calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self._pem: str | None = None

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    def ssl_for(self, url: str) -> ssl.SSLContext | bool:
        """What aiohttp needs for ``url``: the pinned certificate for the orchestrator, default checks otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "https":
            return True
        if (parts.hostname, parts.port) == (self.host, self.port) and self._pem is not None:
            return pinned_context(self._pem)
        return True

    async def register(
        self, request: RegisterAIWorkerRequest, registered: Callable[[str], None]
    ) -> AsyncIterator[NotifyAIJob]:
        """Register and yield the jobs the orchestrator sends until the stream ends (:class:`LinkLost`)
        or the orchestrator refuses (:class:`Refused`). ``registered`` is called with the worker's id once an
        lpnode orchestrator has accepted this worker."""
        channel = await self._channel()
        try:
            call = channel.unary_stream(
                REGISTER_AI_WORKER,
                request_serializer=RegisterAIWorkerRequest.SerializeToString,
                response_deserializer=NotifyAIJob.FromString,
            )(request)
            watch = asyncio.ensure_future(_accepted(call, registered))
            try:
                async for job in call:
                    yield job
            except grpc.aio.AioRpcError as exc:
                raise _classify(self.url, exc) from None
            finally:
                watch.cancel()
                call.cancel()
            raise LinkLost(f"{self.url} ended the stream")
        finally:
            await channel.close()

    async def _channel(self) -> grpc.aio.Channel:
        options: list[tuple[str, str | int]] = [
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if not self.tls:
            return grpc.aio.insecure_channel(grpc_target(self.host, self.port), options=options)
        try:
            channel, self._pem = await pinned_channel(self.host, self.port, options)
        except (OSError, ssl.SSLError) as exc:
            raise LinkLost(f"{self.url}: cannot open TLS: {exc}") from None
        return channel


async def _accepted(call: grpc.aio.UnaryStreamCall, registered: Callable[[str], None]) -> None:
    """Call ``registered(worker id)`` when the orchestrator's headers say it took this worker (lpnode
    orchestrators send ``lpnode-worker-id`` at once; go-livepeer's send headers with the first job)."""
    try:
        metadata = await call.initial_metadata()
    except grpc.aio.AioRpcError:
        return
    worker_id = dict(metadata or ()).get(WORKER_ID_METADATA)
    if worker_id is not None:
        registered(str(worker_id))


def _classify(url: str, exc: grpc.aio.AioRpcError) -> LpnodeError:
    details = exc.details() or ""
    if details.startswith(INVALID_SECRET):
        hint = details[len(INVALID_SECRET) :].lstrip(": ") or "check --orch-secret"
        return Refused(f"the orchestrator at {url} refused this worker: {INVALID_SECRET} ({hint})")
    if details == ZERO_CAPACITY:
        return Refused(f"the orchestrator at {url} refused this worker: zero capacity; check --ai-models")
    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return Refused(f"the orchestrator at {url} refused this worker: {details}")
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return Refused(f"{url} does not take remote AI workers (is it an orchestrator?): {details}")
    return LinkLost(f"{url}: {exc.code().name}: {details or 'no details'}")
