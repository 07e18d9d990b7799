"""A stand-in orchestrator for testing the same-port server with real clients (not for production).

    python -m lpnode.protocol.demo_server --port 8935 [--host 127.0.0.1] [--tls-dir DIR]

Serves ``GET /healthz`` over HTTP and ``net.Orchestrator/GetOrchestrator`` over gRPC on one port, with
TLS (a self-signed certificate kept in ``--tls-dir``) or plain. ``GetOrchestrator`` answers a fixed
``OrchestratorInfo`` (one warm text-to-image model, priced) with a fresh auth token; it echoes the
request's ``address`` into the reply's ``address`` so callers can see their request was decoded, and
refuses requests whose ``sig`` is ``b"deny"`` with ``PERMISSION_DENIED``.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lpnode.errors import ConfigError
from lpnode.logs import configure_logging
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, build_capabilities_prices
from lpnode.protocol.certs import ensure_certificate
from lpnode.protocol.grpc_unary import GrpcError, PeerInfo, StatusCode
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest
from lpnode.protocol.orchestrator_service import orchestrator_methods
from lpnode.protocol.same_port import ServerSettings, run_same_port

OFFERS = (
    ModelOffer("text-to-image", "stabilityai/sd-turbo", warm=True, capacity=1, price_per_unit=Fraction(4768371, 1000)),
    ModelOffer("llm", "meta-llama/Meta-Llama-3.1-8B-Instruct", warm=False, capacity=2, price_per_unit=Fraction(7)),
)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "http_version": request.scope.get("http_version")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on and to put in the certificate")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-dir", type=Path, help="serve TLS with the certificate kept here (made if missing)")
    args = parser.parse_args(argv)
    configure_logging()
    scheme = "https" if args.tls_dir else "http"
    service_url = f"{scheme}://{args.host}:{args.port}"
    app = Starlette(routes=[Route("/healthz", healthz)])
    tokens = AuthTokens()

    async def get_orchestrator(request: OrchestratorRequest, peer: PeerInfo) -> OrchestratorInfo:
        if request.sig == b"deny":
            raise GrpcError(StatusCode.PERMISSION_DENIED, "signature check failed; sign the request with your key")
        return OrchestratorInfo(
            transcoder=service_url,
            address=request.address,
            capabilities=build_capabilities(OFFERS),
            capabilities_prices=build_capabilities_prices(OFFERS),
            auth_token=tokens.issue(),
        )

    try:
        tls = ensure_certificate(args.tls_dir, args.host) if args.tls_dir else None
        run_same_port(app, orchestrator_methods(get_orchestrator), ServerSettings(args.host, args.port, tls))
    except ConfigError as exc:
        print(f"demo_server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
