"""The gateway's settings and price caps (kept free of heavy imports: the ``lpnode`` command reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from lpnode.errors import ConfigError

if TYPE_CHECKING:
    from lpnode.gateway.directory import Offer
    from lpnode.payments.settings import ChainSettings

SELECTOR_NAMES = ("latency", "go-livepeer")


@dataclass(frozen=True)
class PriceCaps:
    """Most wei per unit the gateway pays: per (pipeline, model), per pipeline (``"default"`` model), and
    overall. go-livepeer's ``-maxPricePerUnit`` and ``-maxPricePerCapability``; enforced off-chain too, and on
    chain against the price of each job's session as well as the advertised one."""

    overall: Fraction | None = None
    per_model: Mapping[tuple[str, str], Fraction] = field(default_factory=dict)

    def cap(self, pipeline: str, model_id: str) -> Fraction | None:
        specific = self.per_model.get((pipeline, model_id))
        if specific is not None:
            return specific
        return self.per_model.get((pipeline, "default"), self.overall)

    def allows(self, offer: Offer) -> bool:
        cap = self.cap(offer.pipeline, offer.model_id)
        return cap is None or offer.price is None or offer.price <= cap


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

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"http://{host}:{self.http_port}"


def parse_price(text: str) -> Fraction:
    """``-maxPricePerUnit``: ``<number>[wei|eth]`` (off-chain, other currencies cannot be converted)."""
    value = text.strip().lower()
    scale = 1
    for suffix, factor in (("wei", 1), ("eth", 10**18)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], factor
            break
    try:
        return Fraction(value) * scale
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"price {text!r} is not a number with an optional wei or eth suffix") from None
