"""What the orchestrator tells a gateway in ``OrchestratorInfo``: its models, their state and prices.

Offers come from the runner pool's live snapshot, so ``warm``, ``capacity``, ``capacityInUse`` and
``runnerVersion`` are current on every ``GetOrchestrator``. Prices come from aiModels.json: a price in
wei (or no currency) is sent as it is, one in ``eth`` is converted to wei. Prices in other currencies
(e.g. ``USD``) need an on-chain price feed: on chain they are converted at each lookup with the feed's
latest rate; off-chain they are not advertised (a warning at start says so). An entry's ``gateway`` other
than ``default`` prices that gateway's address only.

On chain, ``price_info`` is the price of what the gateway asked for (:func:`requested_price`: go-livepeer's
``PriceInfoForCaps``, the sum of the prices of every (capability, model) in the request's constraints),
times go's ``-autoAdjustPrice`` overhead, cut to 3 decimals as go's ``PriceToFixed`` does (:func:`fixed_price`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from lpnode.logs import log_event
from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import ModelStatus
from lpnode.pipelines import NETWORK_PIPELINES
from lpnode.protocol.auth_token import AuthTokens
from lpnode.protocol.capabilities import (
    ModelOffer,
    build_capabilities,
    build_capabilities_prices,
    pipeline_for_capability,
    price_info,
)
from lpnode.protocol.lp_rpc_pb2 import (
    Capabilities,
    GPUComputeInfo,
    HardwareInformation,
    OrchestratorInfo,
    OrchestratorRequest,
    PriceInfo,
)
from lpnode.schemas import GPUComputeInfo as GPUFacts

if TYPE_CHECKING:
    from lpnode.orchestrator.payments import OrchestratorPayments

log = logging.getLogger("lpnode.orchestrator")
WEI_PER_ETH = 10**18
DEFAULT_GATEWAY = "default"
PRICE_SCALE = 1000
"""go-livepeer's ``PriceToFixed`` keeps 3 decimals of a price."""

WeiPer = Callable[[str], Fraction]
"""Wei per one unit of a currency (``"USD"``), from a price feed; raises when it has no rate."""


class PriceBook:
    """Prices per (gateway, pipeline, model) in wei per unit, from aiModels.json. With ``wei_per`` (on chain,
    a price feed) prices in other currencies are kept and converted at each lookup."""

    def __init__(self, configs: Iterable[AIModelConfig], wei_per: WeiPer | None = None) -> None:
        self._prices: dict[tuple[str, str, str], Fraction] = {}
        self._foreign: dict[tuple[str, str, str], tuple[Fraction, str]] = {}
        self._wei_per = wei_per
        unconvertible: set[str] = set()
        for config in configs:
            price = config.price_per_pixel
            if price is None:
                continue
            key = (config.gateway.lower(), config.pipeline, config.model_id)
            currency = config.currency.lower()
            if currency == "eth":
                price *= WEI_PER_ETH
            elif currency not in ("", "wei"):
                if wei_per is not None:
                    self._foreign[key] = (price, config.currency)
                else:
                    unconvertible.add(config.currency)
                continue
            self._prices[key] = price
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
            special = self._lookup((gateway.lower(), pipeline, model_id))
            if special is not None:
                return special
        return self._lookup((DEFAULT_GATEWAY, pipeline, model_id))

    def _lookup(self, key: tuple[str, str, str]) -> Fraction | None:
        price = self._prices.get(key)
        if price is not None or self._wei_per is None or key not in self._foreign:
            return price
        amount, currency = self._foreign[key]
        try:
            return amount * self._wei_per(currency)
        except Exception as exc:  # the feed has no rate yet: the model is offered unpriced rather than free
            log_event(log, "price not converted", logging.WARNING, currency=currency, problem=str(exc) or "no rate")
            return None


def requested_price(request: Capabilities, prices: PriceBook, gateway: str = "") -> Fraction:
    """go-livepeer's ``PriceInfoForCaps``: the sum of this node's prices (for ``gateway``) of every model the
    request constrains, over the capabilities present in its ``capacities``; 0 when none is priced."""
    total = Fraction(0)
    for cap in request.capacities:
        if cap not in request.constraints.PerCapability:
            continue
        constraints = request.constraints.PerCapability[cap]
        try:
            pipeline = pipeline_for_capability(cap)
        except ValueError:
            continue
        for model_id in constraints.models:
            total += prices.price(pipeline, model_id, gateway) or 0
    return total


def fixed_price(price: Fraction) -> PriceInfo:
    """``price`` cut to 3 decimals (go's ``PriceToFixed`` then ``FixedToPrice``), as a reduced ``PriceInfo``."""
    return price_info(Fraction(int(price * PRICE_SCALE), PRICE_SCALE))


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


async def add_payment_terms(
    info: OrchestratorInfo,
    request: OrchestratorRequest,
    payments: OrchestratorPayments,
    prices: PriceBook,
    sender: bytes | None = None,
) -> None:
    """On chain: this node's address, ``price_info`` for what the gateway asked (:func:`requested_price` ×
    the auto-adjust overhead, to 3 decimals) and ticket params at that price for the gateway. Without
    ``sender`` the request's signature must prove its address (ForbiddenError ``orchestrator req sig check
    failed`` otherwise)."""
    if sender is None:
        sender = payments.verify_request(request)
    base = requested_price(request.capabilities, prices, "0x" + sender.hex())
    price = fixed_price(base * payments.overhead(sender)) if base > 0 else price_info(Fraction(0))
    info.address = payments.address
    info.price_info.CopyFrom(price)
    info.ticket_params.CopyFrom(await payments.ticket_params(sender, price))
