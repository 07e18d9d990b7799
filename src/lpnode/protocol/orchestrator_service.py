"""The ``net.Orchestrator`` gRPC service: its method paths, bound to the orchestrator's Python handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lpnode.protocol.grpc_unary import PeerInfo, UnaryMethod
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"

GetOrchestrator = Callable[[OrchestratorRequest, PeerInfo], Awaitable[OrchestratorInfo]]
"""Answers a gateway's ``GetOrchestrator``; raise ``GrpcError`` to refuse it with a status."""


def orchestrator_methods(get_orchestrator: GetOrchestrator) -> dict[str, UnaryMethod[Any, Any]]:
    """The method table for :class:`~lpnode.protocol.grpc_unary.GrpcUnaryApp` / ``serve_same_port``."""
    return {GET_ORCHESTRATOR: UnaryMethod(OrchestratorRequest, get_orchestrator)}
