"""The orchestrator's gRPC services, ``net.Orchestrator`` and ``net.AIWorker``: their method paths, bound to
the orchestrator's Python handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lpnode.protocol.grpc_stream import ServerStream, StreamMethod
from lpnode.protocol.grpc_unary import GrpcMethod, PeerInfo, UnaryMethod
from lpnode.protocol.lp_rpc_pb2 import NotifyAIJob, OrchestratorInfo, OrchestratorRequest, RegisterAIWorkerRequest

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"
REGISTER_AI_WORKER = "/net.AIWorker/RegisterAIWorker"

GetOrchestrator = Callable[[OrchestratorRequest, PeerInfo], Awaitable[OrchestratorInfo]]
"""Answers a gateway's ``GetOrchestrator``; raise ``GrpcError`` to refuse it with a status."""

RegisterAIWorker = Callable[[RegisterAIWorkerRequest, PeerInfo, ServerStream[NotifyAIJob]], Awaitable[None]]
"""Serves one remote AI worker's stream: send its jobs until it leaves; raise ``GrpcError`` to end it."""


def orchestrator_methods(
    get_orchestrator: GetOrchestrator, register_ai_worker: RegisterAIWorker | None = None
) -> dict[str, GrpcMethod]:
    """The method table for :class:`~lpnode.protocol.grpc_unary.GrpcUnaryApp` / ``serve_same_port``."""
    methods: dict[str, GrpcMethod] = {GET_ORCHESTRATOR: UnaryMethod(OrchestratorRequest, get_orchestrator)}
    if register_ai_worker is not None:
        methods[REGISTER_AI_WORKER] = StreamMethod(RegisterAIWorkerRequest, register_ai_worker)
    return methods
