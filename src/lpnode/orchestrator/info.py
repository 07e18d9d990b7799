"""What the orchestrator tells a gateway in ``OrchestratorInfo``: its models, their state and prices.

Offers come from the runner pool's live snapshot, so ``warm``, ``capacity``, ``capacityInUse`` and
``runnerVersion`` are current on every ``GetOrchestrator``. Prices come from aiModels.json: a price in
wei (or no currency) is sent as it is, one in ``eth`` is converted to wei. Prices in other currencies
(e.g. ``USD``) need an on-chain price feed, so off-chain they are not advertised (a warning at start says
so). An entry's ``gateway`` other than ``default`` prices that gateway's address only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from fractions import Fraction

from lpnode.logs import log_event
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import ModelStatus
from lpnode.pipelines import NETWORK_PIPELINES
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import ModelOffer, build_capabilities, build_capabilities_prices
from lpnode.protocol.lp_rpc_pb2 import GPUComputeInfo, HardwareInformation, OrchestratorInfo, OrchestratorRequest
from lpnode.schemas import GPUComputeInfo as GPUFacts

log = logging.getLogger("lpnode.orchestrator")
WEI_PER_ETH = 10**18
DEFAULT_GATEWAY = "default"


class PriceBook:
    """Prices per (gateway, pipeline, model) in wei per unit, from aiModels.json."""

    def __init__(self, configs: Iterable[AIModelConfig]) -> None:
        self._prices: dict[tuple[str, str, str], Fraction] = {}
        unconvertible: set[str] = set()
        for config in configs:
            price = config.price_per_pixel
            if price is None:
                continue
            currency = config.currency.lower()
            if currency == "eth":
                price *= WEI_PER_ETH
            elif currency not in ("", "wei"):
                unconvertible.add(config.currency)
                continue
            self._prices[(config.gateway.lower(), config.pipeline, config.model_id)] = price
        for currency in sorted(unconvertible):
            log_event(
                log,
                "prices in this currency need an on-chain price feed; they are not advertised off-chain",
                logging.WARNING,
                currency=currency,
            )

    def price(self, pipeline: str, model_id: str, gateway: str = "") -> Fraction | None:
        """The price ``gateway`` (an 0x address, or empty) pays for a unit of (pipeline, model_id)."""
        if gateway:
            special = self._prices.get((gateway.lower(), pipeline, model_id))
            if special is not None:
                return special
        return self._prices.get((DEFAULT_GATEWAY, pipeline, model_id))


def offers(snapshot: Mapping[tuple[str, str], ModelStatus], prices: PriceBook, gateway: str = "") -> list[ModelOffer]:
    """One offer per served model. ``capacity`` is what the model may serve at once (aiModels.json's
    ``capacity``, advertised as written), ``capacity_in_use`` what it serves now."""
    return [
        ModelOffer(
            pipeline=status.pipeline,
            model_id=status.model_id,
            warm=status.warm,
            capacity=status.capacity,
            capacity_in_use=min(status.in_use, status.capacity),
            runner_version=status.version,
            price_per_unit=prices.price(status.pipeline, status.model_id, gateway),
        )
        for status in snapshot.values()
        if status.pipeline in NETWORK_PIPELINES  # custom pipelines are offered as BYOC capabilities
    ]


def hardware(
    snapshot: Mapping[tuple[str, str], ModelStatus], gpus: Mapping[str, GPUFacts]
) -> list[HardwareInformation]:
    """``hardware`` entries: each model with the GPUs of this node (empty maps on CPU-only hosts)."""
    infos = []
    for status in snapshot.values():
        if status.pipeline not in NETWORK_PIPELINES:
            continue
        info = HardwareInformation(pipeline=status.pipeline, model_id=status.model_id)
        for index, gpu in gpus.items():
            info.gpu_info[index].CopyFrom(
                GPUComputeInfo(
                    id=gpu.id,
                    name=gpu.name,
                    major=gpu.major,
                    minor=gpu.minor,
                    memory_free=gpu.memory_free,
                    memory_total=gpu.memory_total,
                )
            )
        infos.append(info)
    return infos


def orchestrator_info(
    request: OrchestratorRequest,
    *,
    service_url: str,
    snapshot: Mapping[tuple[str, str], ModelStatus],
    prices: PriceBook,
    tokens: AuthTokens,
    gpus: Mapping[str, GPUFacts],
) -> OrchestratorInfo:
    """The reply to ``GetOrchestrator``. Off-chain: no ``ticket_params``, ``price_info`` or ``address``."""
    gateway = "0x" + request.address.hex() if request.address else ""
    current = offers(snapshot, prices, gateway)
    return OrchestratorInfo(
        transcoder=service_url,
        capabilities=build_capabilities(current),
        capabilities_prices=build_capabilities_prices(current),
        hardware=hardware(snapshot, gpus),
        auth_token=tokens.issue(),
    )
