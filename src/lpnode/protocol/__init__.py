"""The Livepeer wire protocol: lp_rpc messages, gRPC and HTTP on one port, certificates, auth tokens, capabilities.

Public names are re-exported here; ``lp_rpc_pb2`` is generated from ``lp_rpc.proto`` by ``scripts/gen-proto``.
"""

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
