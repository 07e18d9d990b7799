"""The Livepeer wire protocol: lp_rpc messages, gRPC and HTTP on one port, certificates, auth tokens, capabilities.

Public names are re-exported here, each loaded on first use (so ``import lpnode.protocol.admin_access`` does not
load gRPC, the servers and the capability tables); ``lp_rpc_pb2`` is generated from ``lp_rpc.proto`` by
``scripts/gen-proto``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.protocol.auth_token import TOKEN_VALIDITY_SECONDS, AuthTokens, TokenCheck, TokenProblem
    from lpnode.protocol.capabilities import (
        PIPELINE_CAPABILITIES,
        Capability,
        ModelOffer,
        build_capabilities,
        build_capabilities_prices,
        capabilities_in_bitstring,
        capability_bitstring,
        capability_for_pipeline,
        incompatibility,
        pipeline_for_capability,
        price_info,
    )
    from lpnode.protocol.certs import TlsFiles, create_certificate, ensure_certificate
    from lpnode.protocol.grpc_stream import ServerStream, StreamMethod
    from lpnode.protocol.grpc_unary import GrpcError, GrpcMethod, GrpcUnaryApp, PeerInfo, StatusCode, UnaryMethod
    from lpnode.protocol.orchestrator_service import (
        GET_ORCHESTRATOR,
        REGISTER_AI_WORKER,
        GetOrchestrator,
        RegisterAIWorker,
        orchestrator_methods,
    )
    from lpnode.protocol.same_port import (
        SamePortApp,
        ServerSettings,
        is_grpc_request,
        new_event_loop,
        run_same_port,
        serve_same_port,
    )

_EXPORTS = {
    "auth_token": (
        "AuthTokens",
        "TOKEN_VALIDITY_SECONDS",
        "TokenCheck",
        "TokenProblem",
    ),
    "capabilities": (
        "Capability",
        "ModelOffer",
        "PIPELINE_CAPABILITIES",
        "build_capabilities",
        "build_capabilities_prices",
        "capabilities_in_bitstring",
        "capability_bitstring",
        "capability_for_pipeline",
        "incompatibility",
        "pipeline_for_capability",
        "price_info",
    ),
    "orchestrator_service": (
        "GET_ORCHESTRATOR",
        "GetOrchestrator",
        "REGISTER_AI_WORKER",
        "RegisterAIWorker",
        "orchestrator_methods",
    ),
    "grpc_unary": (
        "GrpcError",
        "GrpcMethod",
        "GrpcUnaryApp",
        "PeerInfo",
        "StatusCode",
        "UnaryMethod",
    ),
    "same_port": (
        "SamePortApp",
        "ServerSettings",
        "is_grpc_request",
        "new_event_loop",
        "run_same_port",
        "serve_same_port",
    ),
    "grpc_stream": (
        "ServerStream",
        "StreamMethod",
    ),
    "certs": (
        "TlsFiles",
        "create_certificate",
        "ensure_certificate",
    ),
}
__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "GET_ORCHESTRATOR",
    "PIPELINE_CAPABILITIES",
    "REGISTER_AI_WORKER",
    "TOKEN_VALIDITY_SECONDS",
    "AuthTokens",
    "Capability",
    "GetOrchestrator",
    "GrpcError",
    "GrpcMethod",
    "GrpcUnaryApp",
    "ModelOffer",
    "PeerInfo",
    "RegisterAIWorker",
    "SamePortApp",
    "ServerSettings",
    "ServerStream",
    "StatusCode",
    "StreamMethod",
    "TlsFiles",
    "TokenCheck",
    "TokenProblem",
    "UnaryMethod",
    "build_capabilities",
    "build_capabilities_prices",
    "capabilities_in_bitstring",
    "capability_bitstring",
    "capability_for_pipeline",
    "create_certificate",
    "ensure_certificate",
    "incompatibility",
    "is_grpc_request",
    "new_event_loop",
    "orchestrator_methods",
    "pipeline_for_capability",
    "price_info",
    "run_same_port",
    "serve_same_port",
]
