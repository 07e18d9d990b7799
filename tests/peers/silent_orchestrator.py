"""A faulty orchestrator, for tests: it answers ``GetOrchestrator`` like a healthy one (one warm text-to-image
model, a fresh auth token) and accepts jobs, but never answers them — and ignores ``Lpnode-Timeout``, as
go-livepeer orchestrators do. It stands in for a hung go-livepeer node, which cannot run here.

    python -m peers.silent_orchestrator --port 8935 --model lpnode/tiny-text-to-image
"""

from __future__ import annotations

import argparse
import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, build_capabilities_prices
from lpnode.protocol.grpc_unary import PeerInfo
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.orchestrator_service import orchestrator_methods
from lpnode.protocol.same_port import ServerSettings, run_same_port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    offers = [ModelOffer("text-to-image", args.model, warm=True, capacity=4)]
    tokens = AuthTokens()
    accepted = 0

    async def get_orchestrator(request: OrchestratorRequest, peer: PeerInfo) -> OrchestratorInfo:
        return OrchestratorInfo(
            transcoder=url,
            capabilities=build_capabilities(offers),
            capabilities_prices=build_capabilities_prices(offers),
            auth_token=tokens.issue(),
        )

    async def job(request: Request) -> Response:
        nonlocal accepted
        await request.body()
        accepted += 1
        await asyncio.Event().wait()  # never answers
        return Response(status_code=500)

    async def count(request: Request) -> Response:
        return Response(str(accepted))

    app = Starlette(routes=[Route("/text-to-image", job, methods=["POST"]), Route("/accepted", count)])
    run_same_port(app, orchestrator_methods(get_orchestrator), ServerSettings("127.0.0.1", args.port, None))


if __name__ == "__main__":
    main()
