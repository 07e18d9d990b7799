"""``lpnode signer``: a remote signer (go-livepeer's ``-remoteSigner`` node), its flags and their checks.

A go-livepeer signer start line works with the binary name changed (``lpnode livepeer -remoteSigner ...`` runs
this command). The signer is on chain only: it pays from its keystore wallet's deposit and reserve.

Start-up refuses, in one line each: an off-chain ``-network`` (``Remote signer mode requires on-chain
network``), a bad webhook URL, and a non-loopback ``-httpAddr`` with no ``-remoteSignerWebhookUrl`` unless
``-remoteSignerAllowNoAuth`` (anyone reaching such a signer could spend its deposit).
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.logs import command_log_level
from lpnode.payments.settings import (
    DEFAULT_MAX_TICKET_EV,
    DEFAULT_MAX_TOTAL_EV,
    ChainSettings,
    add_connection_flags,
    chain_settings,
    go_duration,
)
from lpnode.signer.ceilings import parse_capability_prices, parse_price_flag
from lpnode.signer.webhook import check_webhook_url, parse_webhook_headers

DEFAULT_HTTP_ADDR = "127.0.0.1:8935"
DEFAULT_DISCOVERY_INTERVAL = 25 * 60.0


def _go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class SignerSettings:
    """The checked flags of ``lpnode signer``. Prices are wei per unit, or USD when flagged."""

    chain: ChainSettings
    data_dir: Path
    http_host: str
    http_port: int
    webhook_url: str = ""
    webhook_headers: dict[str, str] = field(default_factory=dict, repr=False)
    allow_no_auth: bool = False
    max_price: tuple[Fraction, bool] | None = None
    pixels_per_unit: Fraction = Fraction(1)
    capability_prices: dict[tuple[str, str], tuple[Fraction, bool]] = field(default_factory=dict)
    remote_discovery: bool = False
    orch_addrs: tuple[str, ...] = ()
    orch_webhook_url: str = ""
    discovery_interval: float = DEFAULT_DISCOVERY_INTERVAL


def add_signer_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "signer",
        help="sign ticket payments for key-less gateways and apps (a remote signer, on chain)",
        description="Run a remote signer: it holds a keystore wallet with a deposit on chain and signs payments "
        "for gateways and apps that have no Ethereum key (go-livepeer's -remoteSigner). go-livepeer spellings of "
        "the flags are accepted too. Keep it on loopback, or give it an auth webhook.",
        epilog="Example: lpnode signer -network arbitrum-one-mainnet -ethUrl URL -ethKeystorePath ~/.lpnode/keystore "
        "-ethPassword pw.txt -httpAddr 127.0.0.1:7936 (docs/remote-signer.md)",
        allow_abbrev=False,
    )
    p.add_argument("-remoteSigner", dest="role_remote_signer", nargs="?", const=True, default=True, type=_go_bool)
    p.add_argument(
        "--http-addr", "-httpAddr", dest="http_addr", default=DEFAULT_HTTP_ADDR,
        help=f"HOST:PORT to serve on, plain HTTP (default {DEFAULT_HTTP_ADDR})",
    )  # fmt: skip
    p.add_argument(
        "--data-dir", "-dataDir", "-datadir", dest="data_dir", type=Path, default=Path("~/.lpnode/signer"),
        help="where the keystore is looked for (default ~/.lpnode/signer; keystore in DATA_DIR/keystore)",
    )  # fmt: skip
    g = p.add_argument_group("chain")
    add_connection_flags(g)
    g.add_argument("--max-ticket-ev", "-maxTicketEV", dest="max_ticket_ev", default=str(DEFAULT_MAX_TICKET_EV),
                   help="the largest ticket EV accepted, wei (default 3e12)")  # fmt: skip
    g.add_argument("--max-total-ev", "-maxTotalEV", dest="max_total_ev", default=str(DEFAULT_MAX_TOTAL_EV),
                   help="the largest EV of one payment, wei (default 2e13)")  # fmt: skip
    g.add_argument("--deposit-multiplier", "-depositMultiplier", dest="deposit_multiplier", default="1",
                   help="face values must be at most deposit / this (default 1)")  # fmt: skip
    g.add_argument("--price-feed-addr", "-priceFeedAddr", dest="price_feed_addr", default="",
                   help="Chainlink ETH/USD aggregator, for maximum prices in USD (default: the network's)")  # fmt: skip
    a = p.add_argument_group("who may spend the deposit")
    a.add_argument("--webhook-url", "-remoteSignerWebhookUrl", dest="webhook_url", default="",
                   help="auth webhook asked before each payment is signed")  # fmt: skip
    a.add_argument("--webhook-headers", "-remoteSignerWebhookHeaders", dest="webhook_headers", default="",
                   help="headers sent to the webhook, 'k:v,k2:v2'")  # fmt: skip
    a.add_argument(
        "--allow-no-auth",
        "-remoteSignerAllowNoAuth",
        dest="allow_no_auth",
        nargs="?",
        const=True,
        default=False,
        type=_go_bool,
        help="serve a public -httpAddr with no webhook (anyone may spend)",
    )
    c = p.add_argument_group("price ceilings")
    c.add_argument("--max-price-per-unit", "-maxPricePerUnit", dest="max_price", default="0",
                   help="the most paid per unit: wei, or a number with eth or USD (default 0: any)")  # fmt: skip
    c.add_argument("--pixels-per-unit", "-pixelsPerUnit", dest="pixels_per_unit", default="1",
                   help="the maximum is -maxPricePerUnit / this (default 1)")  # fmt: skip
    c.add_argument("--max-price-per-capability", "-maxPricePerCapability", dest="max_caps", default="",
                   help="per pipeline/model maximums: go-livepeer's JSON, or a file")  # fmt: skip
    d = p.add_argument_group("discovery")
    d.add_argument("--remote-discovery", "-remoteDiscovery", dest="remote_discovery", nargs="?", const=True,
                   default=False, type=_go_bool, help="serve GET /discover-orchestrators")  # fmt: skip
    d.add_argument("--orch-addr", "-orchAddr", dest="orch_addr", default="", help="orchestrators, comma-separated")
    d.add_argument("--orch-webhook-url", "-orchWebhookUrl", dest="orch_webhook_url", default="",
                   help="a URL answering the orchestrators to list")  # fmt: skip
    d.add_argument("--discovery-interval", "-liveAICapReportInterval", dest="discovery_interval", default="25m",
                   help="how often orchestrators are polled (default 25m)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("-v", dest="verbosity", type=int, help="go-livepeer verbosity (5 or more: debug)")


def is_loopback(host: str) -> bool:
    """go's check: ``localhost``, ``127.x`` or ``::1`` (an empty host means every interface: not loopback)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().removeprefix("http://").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"-httpAddr {text!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


def settings_from_args(args: argparse.Namespace) -> SignerSettings:
    """Check the flags; every problem is one ``ConfigError`` line (no password or header value in it)."""
    if not args.role_remote_signer:
        raise ConfigError("-remoteSigner=false: this command runs a remote signer; leave the flag out")
    chain = chain_settings(args)
    if not chain.on_chain:
        raise ConfigError("Remote signer mode requires on-chain network: give -network with -ethUrl")
    host, port = _http_addr(args.http_addr)
    webhook = check_webhook_url(args.webhook_url) if args.webhook_url.strip() else ""
    if not webhook and not is_loopback(host) and not args.allow_no_auth:
        raise ConfigError(
            f"Refusing to start: remote signer on public -httpAddr {args.http_addr} with no -remoteSignerWebhookUrl "
            "signs payments from this node's deposit for any caller. Set the webhook, or pass "
            "-remoteSignerAllowNoAuth to override."
        )
    try:
        pixels = Fraction(args.pixels_per_unit.strip())
    except (ValueError, ZeroDivisionError):
        pixels = Fraction(0)
    if pixels <= 0:
        raise ConfigError(f"-pixelsPerUnit must be a number above 0, got {args.pixels_per_unit!r}")
    max_price = parse_price_flag(args.max_price, "-maxPricePerUnit")
    caps = parse_capability_prices(args.max_caps)
    needs_feed = (max_price is not None and max_price[1]) or any(usd for _, usd in caps.values())
    if needs_feed and not chain.price_feed:
        raise ConfigError("a maximum price in USD needs an ETH/USD price feed: give -priceFeedAddr")
    orchs = tuple(a.strip() for a in args.orch_addr.split(",") if a.strip())
    orch_webhook = args.orch_webhook_url.strip()
    if args.remote_discovery and not orchs and not orch_webhook:
        raise ConfigError(
            "RemoteDiscovery is set but no orchestrator pool could be configured: give -orchAddr or -orchWebhookUrl"
        )
    return SignerSettings(
        chain=chain,
        data_dir=args.data_dir.expanduser(),
        http_host=host,
        http_port=port,
        webhook_url=webhook,
        webhook_headers=parse_webhook_headers(args.webhook_headers),
        allow_no_auth=bool(args.allow_no_auth),
        max_price=None if max_price is None else (max_price[0] / pixels, max_price[1]),
        pixels_per_unit=pixels,
        capability_prices=caps,
        remote_discovery=bool(args.remote_discovery),
        orch_addrs=orchs,
        orch_webhook_url=orch_webhook,
        discovery_interval=go_duration(args.discovery_interval, "-liveAICapReportInterval"),
    )


def log_level(args: argparse.Namespace) -> str:
    return command_log_level(str(args.log_level), args.verbosity)
