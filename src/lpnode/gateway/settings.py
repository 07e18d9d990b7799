"""The gateway's settings and price caps (kept free of heavy imports: the ``lpnode`` command reads them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from lpnode.errors import ConfigError

if TYPE_CHECKING:
    from lpnode.gateway.directory import Offer
    from lpnode.payments.settings import ChainSettings

SELECTOR_NAMES = ("latency", "go-livepeer", "stake")
STAKE_SELECTOR = "stake"
"""go-livepeer's on-chain selection (:mod:`lpnode.gateway.selection_chain`): the default when orchestrators come
from the chain."""
OVERALL = ("", "")
"""The key of ``-maxPricePerUnit`` in :attr:`PriceCaps.usd`."""


@dataclass(frozen=True)
class PriceCaps:
    """Most wei per unit the gateway pays: per (pipeline, model), per pipeline (``"default"`` model), and
    overall. go-livepeer's ``-maxPricePerUnit`` and ``-maxPricePerCapability``; enforced off-chain too, and on
    chain against the price of each job's session as well as the advertised one.

    Caps may be in USD (``usd`` names which: a (pipeline, model) key, or :data:`OVERALL`); they are converted to
    wei with the ETH/USD price feed at each use (``wei_per_usd``, set on chain once the feed is read), so they
    follow the ETH price as go-livepeer's auto-converted prices do."""

    overall: Fraction | None = None
    per_model: Mapping[tuple[str, str], Fraction] = field(default_factory=dict)
    usd: frozenset[tuple[str, str]] = frozenset()
    wei_per_usd: Callable[[], Fraction] | None = None

    def cap(self, pipeline: str, model_id: str) -> Fraction | None:
        for key in ((pipeline, model_id), (pipeline, "default")):
            specific = self.per_model.get(key)
            if specific is not None:
                return self._wei(key, specific)
        return None if self.overall is None else self._wei(OVERALL, self.overall)

    def _wei(self, key: tuple[str, str], amount: Fraction) -> Fraction | None:
        if key not in self.usd:
            return amount
        if self.wei_per_usd is None:
            return None  # no rate (off-chain, where USD caps are refused at start): no cap to apply
        return amount * self.wei_per_usd()

    def allows(self, offer: Offer) -> bool:
        cap = self.cap(offer.pipeline, offer.model_id)
        return cap is None or offer.price is None or offer.price <= cap


@dataclass(frozen=True)
class SelectionWeights:
    """go-livepeer's ``-selectStakeWeight``, ``-selectPriceWeight``, ``-selectRandFreq`` (they sum to 1) and
    ``-selectPriceExpFactor``, with go's defaults."""

    stake: float = 0.7
    price: float = 0.0
    random: float = 0.3
    price_exp_factor: float = 100.0


@dataclass(frozen=True)
class GatewaySettings:
    orchestrators: list[str]
    http_host: str = "127.0.0.1"
    http_port: int = 8935
    cli_host: str = "127.0.0.1"
    cli_port: int = 5935
    webhook_url: str = ""
    public_url: str = ""  # default http://<http addr>
    data_dir: Path = Path("~/.lpnode/gateway")
    caps: PriceCaps = field(default_factory=PriceCaps)
    selector: str = "latency"
    default_models: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    queue_size: int = 256  # requests that may wait per (pipeline, model) when every orchestrator is at capacity
    queue_wait: float = 60.0  # the longest one of them waits (never past its deadline)
    refresh_seconds: float = 60.0
    result_ttl: float = 3600.0
    auth: str = "none"  # "keys": Bearer API keys from `lpnode keys`
    admin_token: str = ""  # required on the admin API when set (lpnode.protocol.admin_access)
    chain: ChainSettings | None = None  # None: off-chain (no payments); else the chain the gateway pays on
    db_url: str = field(default="", repr=False)  # PostgreSQL for keys, usage, async jobs, limits ("": SQLite)
    weights: SelectionWeights = field(default_factory=SelectionWeights)  # the "stake" selection's
    chain_poll_seconds: float = 5.0  # on chain, how often the pool's contracts are checked for changes
    remote_signer_url: str = ""  # -remoteSignerUrl: pay on-chain orchestrators through this signer (off-chain)
    remote_signer_headers: dict[str, str] = field(default_factory=dict, repr=False)  # sent to the signer only
    live_payment_interval: float = 5.0  # -livePaymentInterval, for streams paid through the signer

    @property
    def chain_discovery(self) -> bool:
        """Orchestrators come from the chain's pool: on chain, with neither ``-orchAddr`` nor a webhook."""
        return self.chain is not None and not self.orchestrators and not self.webhook_url

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"http://{host}:{self.http_port}"


def parse_price(text: str) -> Fraction:
    """``-maxPricePerUnit``: ``<number>[wei|eth]`` in wei (:func:`parse_price_currency` also takes ``USD``)."""
    amount, usd = parse_price_currency(text)
    if usd:
        raise ConfigError(f"price {text!r} is in USD, which needs an on-chain price feed; use wei or eth")
    return amount


def parse_price_currency(text: str) -> tuple[Fraction, bool]:
    """``<number>[wei|eth|usd]`` (go-livepeer's ``-maxPricePerUnit`` spelling, e.g. ``0.02USD``): the amount in wei,
    or in USD when the second value is True (converted later, with the price feed)."""
    value = text.strip().lower()
    scale, usd = 1, False
    for suffix, factor in (("wei", 1), ("eth", 10**18), ("usd", 1)):
        if value.endswith(suffix):
            value, scale, usd = value[: -len(suffix)], factor, suffix == "usd"
            break
    try:
        return Fraction(value) * scale, usd
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"price {text!r} is not a number with an optional wei, eth or USD suffix") from None
