"""Running a signer: open the chain, build the routes, serve plain HTTP until SIGTERM/SIGINT.

At start the signer unlocks its wallet, checks the chain (:func:`lpnode.payments.settings.open_chain`), signs its
own address once (the ``/sign-orchestrator-info`` answer), logs its address with its deposit and reserve, warns
when ``/generate-live-payment`` is unauthenticated (no webhook), and only then listens.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from lpnode.logs import log_event
from lpnode.payments.sender import SenderSettings
from lpnode.payments.settings import open_chain
from lpnode.payments.signatures import address_signature, checksum
from lpnode.protocol.lp_rpc_pb2 import OrchestratorRequest
from lpnode.protocol.remote_signer import OrchestratorInfoSignature
from lpnode.serving import QuietServer, bind_socket, run_until_stopped
from lpnode.signer.ceilings import ConfiguredPrices
from lpnode.signer.command import SignerSettings
from lpnode.signer.discovery import DiscoveryPool
from lpnode.signer.orch_info import InfoClient
from lpnode.signer.payment import Minter
from lpnode.signer.routes import SignerRoutes
from lpnode.signer.webhook import AuthWebhook
from lpnode.uvicorn_config import uvicorn_config

log = logging.getLogger("lpnode.signer")
WEBHOOK_LIST_TIMEOUT = 5.0


async def serve_signer(settings: SignerSettings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; ConfigError (one line) when the chain, wallet or address is unusable."""
    sock = bind_socket(settings.http_host or "0.0.0.0", settings.http_port, flag="-httpAddr")
    node = await open_chain(settings.chain, settings.data_dir)
    session = aiohttp.ClientSession()
    infos = InfoClient()
    try:
        wallet = node.wallet
        feed = node.price_feed
        prices = ConfiguredPrices(
            global_max=None if settings.max_price is None else settings.max_price[0],
            global_usd=settings.max_price is not None and settings.max_price[1],
            per_capability=settings.capability_prices,
            usd_to_wei=feed.to_wei if feed is not None else None,
        )
        webhook = AuthWebhook(settings.webhook_url, settings.webhook_headers, session) if settings.webhook_url else None
        chain = settings.chain
        minter = Minter(
            wallet, node.watcher,
            SenderSettings(chain.max_ticket_ev, chain.max_total_ev, chain.deposit_multiplier), prices, webhook,
        )  # fmt: skip
        signature = address_signature(wallet.key)
        info = OrchestratorInfoSignature(checksum(wallet.address), "0x" + signature.hex())
        discovery = None
        if settings.remote_discovery:
            request = OrchestratorRequest(address=wallet.address, sig=signature, ignoreCapacityCheck=True)
            discovery = DiscoveryPool(
                _addresses(settings, session), infos.get_info, request, prices, session, settings.discovery_interval
            )
        sender = await node.watcher.sender_info(wallet.address)
        log_event(
            log, "signer pays from", address=info.address, deposit_wei=sender.deposit, reserve_wei=sender.reserve,
        )  # fmt: skip
        if sender.deposit <= 0 or sender.reserve <= 0:
            log_event(log, "signer cannot pay yet: fund its deposit and reserve with lpnode deposit", logging.WARNING,
                      address=info.address)  # fmt: skip
        if webhook is None:
            log_event(log, "no -remoteSignerWebhookUrl: /generate-live-payment signs for any caller", logging.WARNING)
        app = SignerRoutes(info, minter, discovery).app()
        config = uvicorn_config(
            app, loop="none", log_config=None, access_log=False, timeout_graceful_shutdown=5, lifespan="off"
        )
        server = QuietServer(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        host = settings.http_host or "0.0.0.0"
        log_event(log, "signer ready", url=f"http://{host}:{settings.http_port}", discovery=settings.remote_discovery)
        try:
            await asyncio.wait([asyncio.ensure_future(stop.wait()), serving], return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
    finally:
        await infos.close()
        await session.close()
        await node.close()
        sock.close()
        log_event(log, "signer stopped")


def _addresses(settings: SignerSettings, session: aiohttp.ClientSession):  # type: ignore[no-untyped-def]
    """The orchestrators discovery polls: the ``-orchWebhookUrl`` answer (``[{"address"}]``), else ``-orchAddr``."""

    async def listed() -> list[str]:
        if not settings.orch_webhook_url:
            return [_url(a) for a in settings.orch_addrs]
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_LIST_TIMEOUT)
        async with session.get(settings.orch_webhook_url, timeout=timeout) as answer:
            answer.raise_for_status()
            data = await answer.json(content_type=None)
        return [_url(str(item["address"])) for item in data if isinstance(item, dict) and item.get("address")]

    return listed


def _url(address: str) -> str:
    return address if "://" in address else "https://" + address


def run_signer(settings: SignerSettings) -> None:
    """Blocking: run a signer until SIGTERM/SIGINT."""

    async def main(stop: asyncio.Event) -> None:
        await serve_signer(settings, stop)

    run_until_stopped(main)
