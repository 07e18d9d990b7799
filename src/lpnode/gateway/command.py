"""``lpnode gateway``: its flags, with go-livepeer's spellings accepted beside ours (``-gateway``,
``-httpAddr``, ``-orchAddr``, ``-cliAddr``, ``-orchWebhookUrl``, ``-maxPricePerCapability``,
``-maxPricePerUnit``, ``-pixelsPerUnit``, ``-dataDir``, ``-monitor``, ``-v``) and the chain flags
(:func:`lpnode.payments.settings.add_chain_flags`: ``-network``, ``-ethUrl``, ``-ethController``,
``-ethKeystorePath``, ``-ethAcctAddr``, ``-ethPassword``, ``-maxTicketEV``, ``-maxTotalEV``,
``-depositMultiplier``, ``-livePaymentInterval``, ...); off-chain by default. On chain without ``-orchAddr`` or
a webhook, orchestrators come from the chain's pool and are chosen by stake (``--selection stake``, weighed with
go's ``-selectStakeWeight``, ``-selectPriceWeight``, ``-selectRandFreq`` and ``-selectPriceExpFactor``). The other
go-livepeer flags are read by :mod:`lpnode.go_flags`."""

from __future__ import annotations

import argparse
import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from lpnode.errors import ConfigError
from lpnode.gateway.settings import (
    OVERALL,
    SELECTOR_NAMES,
    STAKE_SELECTOR,
    GatewaySettings,
    PriceCaps,
    SelectionWeights,
    parse_price_currency,
)
from lpnode.gateway.state import DB_URL_ENV, check_db_url
from lpnode.logs import command_log_level
from lpnode.payments.capability_prices import read_capability_prices
from lpnode.payments.settings import add_chain_flags, chain_settings
from lpnode.pipelines import BATCH_PIPELINES
from lpnode.protocol.admin_access import ADMIN_TOKEN_ENV, read_admin_token


def add_gateway_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the public AI API and route jobs to orchestrators",
        description="Run a gateway: the public AI API on --http-addr, jobs routed to the orchestrators of "
        "--orch-addr / --orch-webhook-url. go-livepeer spellings of the flags are accepted too.",
        allow_abbrev=False,
    )
    p.add_argument("--orch-addr", "-orchAddr", dest="orch_addr", default="", help="HOST:PORT[,HOST:PORT...]")
    p.add_argument("--orch-webhook-url", "-orchWebhookUrl", dest="webhook", default="", help="discovery webhook")
    p.add_argument("--http-addr", "-httpAddr", dest="http_addr", default="127.0.0.1:8935", help="public API")
    p.add_argument("--cli-addr", "-cliAddr", dest="cli_addr", default="127.0.0.1:5935", help="admin API")
    p.add_argument(
        "--admin-token",
        default="",
        help=f"require this token on the admin API, or a file holding it [{ADMIN_TOKEN_ENV}]",
    )
    p.add_argument("--public-url", default="", help="base URL callers reach the API at (for result URLs)")
    p.add_argument(
        "--max-price-per-unit", "-maxPricePerUnit", dest="max_price", default="", help="e.g. 1000wei (default any)"
    )
    p.add_argument(
        "--max-price-per-capability", "-maxPricePerCapability", dest="max_caps", default="", help="JSON or a file"
    )
    p.add_argument("--auth", choices=("none", "keys"), default="none", help="keys: require `lpnode keys` API keys")
    p.add_argument(
        "--selection",
        choices=SELECTOR_NAMES,
        default="",
        help="default: stake when orchestrators come from the chain, else latency",
    )
    weights = SelectionWeights()
    for kebab, flag, dest, default, what in (
        ("--select-stake-weight", "-selectStakeWeight", "select_stake", weights.stake, "weight of stake"),
        ("--select-price-weight", "-selectPriceWeight", "select_price", weights.price, "weight of price"),
        ("--select-rand-freq", "-selectRandFreq", "select_random", weights.random, "weight of chance"),
        ("--select-price-exp-factor", "-selectPriceExpFactor", "select_exp", weights.price_exp_factor, "price scale"),
    ):
        p.add_argument(
            kebab, flag, dest=dest, type=float, default=default, help=f"--selection stake: {what} ({default:g})"
        )
    p.add_argument("--default-models", default="", help='JSON {"pipeline": "model id"} for requests naming none')
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a job may take, its whole answer included (then 504)"
    )
    p.add_argument(
        "--queue-size", type=int, default=256, help="requests that may wait per model when all orchestrators are busy"
    )
    p.add_argument("--queue-wait", type=float, default=60.0, help="the longest a request waits for capacity (s)")
    p.add_argument("--data-dir", "-dataDir", dest="data_dir", type=Path, default=Path("~/.lpnode/gateway"))
    p.add_argument(
        "--db-url",
        default=os.environ.get(DB_URL_ENV, ""),
        help=f"postgresql://USER:PASSWORD@HOST:PORT/DB: keys, usage and async jobs in PostgreSQL, shared with every "
        f"gateway given the same URL (default: SQLite in --data-dir) [{DB_URL_ENV}]",
    )
    p.add_argument(
        "--pixels-per-unit", "-pixelsPerUnit", dest="pixels_per_unit", default="1",
        help="the cap of --max-price-per-unit is per this many units (default 1)",
    )  # fmt: skip
    p.add_argument("-gateway", "-broadcaster", dest="role", nargs="?", const="true", default="true")
    p.add_argument("-monitor", dest="monitor", nargs="?", const="true", default="true", help="/metrics is always on")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("-v", dest="verbosity", type=int, help="go-livepeer verbosity (5 or more: debug)")
    add_chain_flags(p, "gateway")
    p.add_argument(
        "--remote-signer-url", "-remoteSignerUrl", dest="remote_signer_url", default="",
        help="pay on-chain orchestrators through this remote signer (http://HOST:PORT), with no Ethereum flags",
    )  # fmt: skip
    p.add_argument(
        "--remote-signer-headers", "-remoteSignerHeaders", dest="remote_signer_headers", default="",
        help="headers for the remote signer only: 'Key:Value,Key2:Value2'",
    )  # fmt: skip


def _signer_url(text: str) -> str:
    if not text.strip():
        return ""
    from lpnode.gateway.remote_signer import signer_url

    return signer_url(text)


def _signer_headers(text: str) -> dict[str, str]:
    from lpnode.gateway.remote_signer import signer_headers

    return signer_headers(text)


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    chain = chain_settings(args)
    orchestrators = [a.strip() for a in args.orch_addr.split(",") if a.strip()]
    signer = _signer_url(getattr(args, "remote_signer_url", "") or "")
    if signer and chain.on_chain:
        raise ConfigError(
            "-remoteSignerUrl pays with the signer's key: drop -network and the Ethereum flags (the gateway itself "
            "runs off-chain)"
        )
    if not orchestrators and not args.webhook and not chain.on_chain and not signer:
        raise ConfigError(
            "give --orch-addr HOST:PORT[,...] or --orch-webhook-url URL so the gateway finds orchestrators "
            "(on chain, with -network, they come from the chain's pool)"
        )
    selector = args.selection or (
        STAKE_SELECTOR if chain.on_chain and not orchestrators and not args.webhook else "latency"
    )
    if selector == STAKE_SELECTOR and not chain.on_chain:
        raise ConfigError("--selection stake weighs orchestrators by their stake on chain: give -network too")
    http_host, http_port = _address(args.http_addr, "--http-addr")
    cli_host, cli_port = _address(args.cli_addr, "--cli-addr")
    if (http_host, http_port) == (cli_host, cli_port):
        raise ConfigError("--http-addr and --cli-addr must differ")
    pixels = _pixels_per_unit(getattr(args, "pixels_per_unit", "1"))
    overall, overall_usd = parse_price_currency(args.max_price) if args.max_price else (None, False)
    if overall is not None:
        overall /= pixels
    usd = {OVERALL} if overall_usd else set()
    per_model = parse_capability_prices(args.max_caps, overall, usd) if args.max_caps else {}
    if usd and not chain.on_chain:
        raise ConfigError(
            "price caps in USD need an on-chain price feed (-network with -priceFeedAddr); use wei or eth"
        )
    return GatewaySettings(
        orchestrators=orchestrators,
        http_host=http_host,
        http_port=http_port,
        cli_host=cli_host,
        cli_port=cli_port,
        webhook_url=args.webhook,
        public_url=args.public_url,
        data_dir=args.data_dir.expanduser(),
        caps=PriceCaps(overall, per_model, frozenset(usd)),
        selector=selector,
        weights=selection_weights(args),
        default_models=_default_models(args.default_models),
        timeout=args.timeout,
        queue_size=_at_least(args.queue_size, 0, "--queue-size"),
        queue_wait=_at_least(args.queue_wait, 0, "--queue-wait"),
        auth=getattr(args, "auth", "none"),
        admin_token=read_admin_token(getattr(args, "admin_token", "")),
        chain=chain if chain.on_chain else None,
        remote_signer_url=signer,
        remote_signer_headers=_signer_headers(getattr(args, "remote_signer_headers", "") or ""),
        live_payment_interval=chain.live_payment_interval,
        db_url=check_db_url(args.db_url) if getattr(args, "db_url", "") else "",
    )


def selection_weights(args: argparse.Namespace) -> SelectionWeights:
    """go-livepeer's selection flags, checked as go checks them: the three weights sum to 1."""
    defaults = SelectionWeights()
    weights = SelectionWeights(
        stake=float(getattr(args, "select_stake", defaults.stake)),
        price=float(getattr(args, "select_price", defaults.price)),
        random=float(getattr(args, "select_random", defaults.random)),
        price_exp_factor=float(getattr(args, "select_exp", defaults.price_exp_factor)),
    )
    parts = (weights.stake, weights.price, weights.random)
    if any(not math.isfinite(w) or w < 0 for w in parts):
        raise ConfigError("-selectStakeWeight, -selectPriceWeight and -selectRandFreq must be 0 or more")
    if abs(sum(parts) - 1.0) > 0.0001:
        raise ConfigError(
            f"-selectStakeWeight ({weights.stake:g}), -selectPriceWeight ({weights.price:g}) and -selectRandFreq "
            f"({weights.random:g}) must sum to 1"
        )
    if not math.isfinite(weights.price_exp_factor) or weights.price_exp_factor <= 0:
        raise ConfigError(f"-selectPriceExpFactor must be above 0, got {weights.price_exp_factor:g}")
    return weights


def parse_capability_prices(
    text: str, fallback: Fraction | None, usd: set[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Fraction]:
    """``-maxPricePerCapability``: go-livepeer's JSON (or a file holding it)::

        {"capabilities_prices": [{"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo",
          "price_per_unit": 1000, "pixels_per_unit": 1, "currency": "wei"}]}

    ``model_id`` omitted means every model of the pipeline; a missing or non-positive price falls back to
    ``--max-price-per-unit`` or leaves the entry out. Entries in ``USD`` are added to ``usd`` (their amounts stay
    in USD, converted on chain with the price feed). Unlike go-livepeer, bad input stops startup."""
    usd = usd if usd is not None else set()
    caps: dict[tuple[str, str], Fraction] = {}
    for entry in read_capability_prices(text, "--max-price-per-capability"):
        if entry.raw.get("pipeline") not in BATCH_PIPELINES:
            raise ConfigError(f"{entry.where}: pipeline must be one of {', '.join(BATCH_PIPELINES)}")
        per_unit = entry.per_unit()
        key = (entry.raw["pipeline"], entry.model_id)
        if per_unit <= 0:
            if fallback is None:
                continue
            per_unit = fallback
            if OVERALL in usd:
                usd.add(key)
        elif entry.currency == "usd":
            usd.add(key)
        caps[key] = per_unit
    return caps


def _pixels_per_unit(text: str) -> Fraction:
    """``-pixelsPerUnit``: go-livepeer's divisor of ``-maxPricePerUnit``, a number above 0."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        value = Fraction(0)
    if value <= 0:
        raise ConfigError(f"-pixelsPerUnit must be a number above 0, got {text!r}")
    return value


def _default_models(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--default-models is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(k in BATCH_PIPELINES and isinstance(v, str) for k, v in data.items()):
        raise ConfigError('--default-models must be {"<pipeline>": "<model id>", ...} with known pipelines')
    return dict(data)


def _address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.strip().removeprefix("http://").rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{flag} {text!r} must be HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def log_level(args: argparse.Namespace) -> str:
    return command_log_level(str(args.log_level), args.verbosity)


_N = TypeVar("_N", int, float)


def _at_least(value: _N, least: _N, flag: str) -> _N:
    if value < least:
        raise ConfigError(f"{flag} must be at least {least}, got {value}")
    return value
