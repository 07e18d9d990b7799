"""The gateway's side of ``lpnode doctor``: what an orchestrator tells a gateway, asked the way a gateway asks.

:func:`advertised` implements :class:`lpnode.dashboard.sources.Advertisement` with the gateway's own
``GetOrchestrator`` client (gRPC, the orchestrator's certificate pinned), so the doctor sees exactly what a
gateway dialling the service address would see. Given the gateway's wallet it signs the request as the gateway
does (:meth:`lpnode.gateway.payments.GatewayPayments.orchestrator_request`): an orchestrator on chain refuses an
unsigned one, and answers a signed one with ticket params made for that wallet. Those params are asked for one
priced model (the first advertised with a price, as a job's session asks), so their face value and win
probability are the ones a job would pay with.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

from lpnode.dashboard.fetch import Unreachable
from lpnode.dashboard.sources import Advertised, GatewayWallet
from lpnode.gateway.directory import job_capabilities
from lpnode.gateway.orch_client import OrchestratorClient, OrchestratorUnreachable
from lpnode.protocol.capabilities import pipeline_for_capability
from lpnode.protocol.lp_rpc_pb2 import OrchestratorInfo, OrchestratorRequest

TIMEOUT = 10.0
_WIN_PROB_ONE = 2**256 - 1  # a ticket's win probability is winProb / (2^256 - 1)


def signed_request(wallet: GatewayWallet) -> tuple[OrchestratorRequest, str]:
    """``GetOrchestrator``'s request signed by ``wallet`` and the address it names; ``ConfigError`` (one line,
    without the password) when the keystore cannot be unlocked."""
    from lpnode.payments.keystore import load_wallet
    from lpnode.payments.signatures import address_signature

    unlocked = load_wallet(wallet.keystore, wallet.account, wallet.password)
    request = OrchestratorRequest(
        address=unlocked.address, sig=address_signature(unlocked.key), ignoreCapacityCheck=True
    )
    return request, unlocked.checksum_address


def advertised(service_url: str, wallet: GatewayWallet | None = None) -> Advertised:
    """Blocking: the models (with their warm flags), hardware entries and, on chain, ticket params
    ``service_url`` advertises; ``Unreachable`` when it does not answer gRPC (or refuses the request)."""
    request, signer = signed_request(wallet) if wallet is not None else (None, "")

    async def call() -> tuple[OrchestratorInfo, OrchestratorInfo, str]:
        client = OrchestratorClient()
        try:
            info = await client.get_info(service_url, request, timeout=TIMEOUT)
            priced = _priced_model(info) if request is not None else None
            if request is None or priced is None:
                return info, info, ""
            asked = OrchestratorRequest()
            asked.CopyFrom(request)
            asked.capabilities.CopyFrom(job_capabilities(*priced))
            return info, await client.get_info(service_url, asked, timeout=TIMEOUT), f"{priced[0]} {priced[1]}"
        finally:
            await client.close()

    try:
        info, paid, model = asyncio.run(call())
    except OrchestratorUnreachable as exc:
        raise Unreachable(str(exc)) from None
    models = {
        (int(cap), str(model_id)): bool(facts.warm)
        for cap, constraint in info.capabilities.constraints.PerCapability.items()
        for model_id, facts in constraint.models.items()
    }
    params = _ticket_params(paid)
    if params is not None and model:
        params["model"] = model
    return Advertised(models, len(info.hardware), params, info.HasField("price_info"), signed_by=signer)


def _priced_model(info: OrchestratorInfo) -> tuple[str, str] | None:
    """(pipeline, model id) of the first network model ``info`` prices above 0; ``None`` when none is priced."""
    for price in info.capabilities_prices:
        if price.pricePerUnit > 0 and price.constraint:
            try:
                return pipeline_for_capability(price.capability), price.constraint
            except ValueError:  # a BYOC capability: its tickets come with its job token
                continue
    return None


def _ticket_params(info: OrchestratorInfo) -> dict[str, str] | None:
    if not info.HasField("ticket_params") or not info.ticket_params.recipient:
        return None
    from lpnode.payments.signatures import checksum

    params = info.ticket_params
    win_prob = Fraction(int.from_bytes(params.win_prob, "big"), _WIN_PROB_ONE)
    return {
        "recipient": checksum(bytes(params.recipient)[-20:].rjust(20, b"\x00")),
        "face_value_wei": str(int.from_bytes(params.face_value, "big")),
        "win_prob": f"{float(win_prob):.6g}",
        "expiration_block": str(int.from_bytes(params.expiration_block, "big")),
    }
