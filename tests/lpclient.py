"""A minimal Livepeer gateway-side client for tests: GetOrchestrator over gRPC and the job headers.

It does what a go-livepeer gateway does off-chain: fetch ``OrchestratorInfo`` (TLS with the orchestrator's
self-signed certificate, or plain h2c), then send jobs with ``Livepeer-Segment`` (base64 ``SegData``
holding the auth token), an empty ``Livepeer-Payment`` and ``Authorization: Livepeer-AI-Worker-1.0``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import grpc

from lpnode.protocol.lp_rpc_pb2 import AuthToken, Capabilities, OrchestratorInfo, OrchestratorRequest, SegData

GET_ORCHESTRATOR = "/net.Orchestrator/GetOrchestrator"
WORKER = "Livepeer-AI-Worker-1.0"


def channel(base_url: str, cert: Path | None) -> grpc.Channel:
    target = base_url.split("://", 1)[1]
    if base_url.startswith("https://"):
        assert cert is not None, "TLS needs the orchestrator's certificate"
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(cert.read_bytes()))
    return grpc.insecure_channel(target)


def get_orchestrator(
    base_url: str, cert: Path | None, request: OrchestratorRequest | None = None, timeout: float = 10
) -> OrchestratorInfo:
    with channel(base_url, cert) as ch:
        call = ch.unary_unary(
            GET_ORCHESTRATOR,
            request_serializer=OrchestratorRequest.SerializeToString,
            response_deserializer=OrchestratorInfo.FromString,
        )
        info: OrchestratorInfo = call(request or OrchestratorRequest(ignoreCapacityCheck=True), timeout=timeout)
        return info


def segment_header(token: AuthToken | None, capabilities: Capabilities | None = None) -> str:
    seg = SegData(manifestId=b"27_model", profiles=b"invalid")
    if token is not None:
        seg.auth_token.CopyFrom(token)
    if capabilities is not None:
        seg.capabilities.CopyFrom(capabilities)
    return base64.b64encode(seg.SerializeToString()).decode()


def job_headers(token: AuthToken | None, *, worker: bool = True, payment: str = "") -> dict[str, str]:
    headers = {"Livepeer-Segment": segment_header(token), "Livepeer-Payment": payment}
    if worker:
        headers["Authorization"] = WORKER
    return headers
