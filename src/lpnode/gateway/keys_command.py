"""``lpnode keys`` (create, list, revoke the gateway's API keys) and ``lpnode usage`` (what they were used for).

Both work on ``DATA_DIR/gateway.sqlite``, the file a gateway run with ``--auth keys`` and the same
``--data-dir`` (default ``~/.lpnode/gateway``) reads, or, given ``--db-url`` (or ``LPNODE_DB_URL``), on the
PostgreSQL database the gateways given that URL share; both may run while the gateways run.
Also runnable on its own: ``python -m lpnode.gateway.keys_command keys list``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.gateway.keys import CACHE_SECONDS, KeyRecord, KeyStore, database_path
from lpnode.gateway.state import DB_URL_ENV, SHARED_CACHE_SECONDS, GatewayState, check_db_url, describe, open_state
from lpnode.gateway.usage import GROUPS, UsageLog

DEFAULT_DATA_DIR = Path("~/.lpnode/gateway")  # the default --data-dir of ``lpnode gateway``
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the gateway's --data-dir, holding gateway.sqlite (default ~/.lpnode/gateway)",
    )
    p.add_argument(
        "--db-url",
        default=os.environ.get(DB_URL_ENV, ""),
        help=f"the gateways' --db-url, postgresql://USER:PASSWORD@HOST:PORT/DB, instead of --data-dir [{DB_URL_ENV}]",
    )


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list and revoke the gateway's API keys",
        description="Manage the API keys a gateway run with --auth keys accepts. Keys are stored hashed in "
        "DATA_DIR/gateway.sqlite, or in the PostgreSQL database of --db-url; a key is shown only when it is created.",
    )
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="{create,list,revoke}")
    create = ksub.add_parser("create", help="create a key and print it (the only time it is shown)")
    create.add_argument("name", help="who the key is for, e.g. alice or mobile-app (unique among active keys)")
    create.add_argument(
        "--rate-per-minute", type=int, metavar="N", help="requests per minute, bursts of up to N (default no limit)"
    )
    create.add_argument("--max-concurrent", type=int, metavar="N", help="requests at once (default no limit)")
    create.add_argument("--json", action="store_true", help="print JSON (key and record) instead of text")
    _data_dir_arg(create)
    ls = ksub.add_parser("list", help="list the keys (never the keys themselves)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _data_dir_arg(ls)
    revoke = ksub.add_parser(
        "revoke",
        help=f"revoke a key; a running gateway refuses it within {CACHE_SECONDS:g} s "
        f"({SHARED_CACHE_SECONDS:g} s with --db-url)",
    )
    revoke.add_argument("name", metavar="NAME", help="the key's name, or its id from 'lpnode keys list'")
    _data_dir_arg(revoke)


def add_usage_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "usage",
        help="requests served, refused, failed and cancelled, units and spend per API key, pipeline or model",
        description="Sum up the gateway's usage records (DATA_DIR/gateway.sqlite, or the database of --db-url). "
        "Units and spend count served (2xx) requests only; refused (4xx), failed (5xx) and cancelled (499) "
        "requests are counted apart.",
    )
    p.add_argument("--since", metavar="WHEN", help="a duration back from now (30m, 1h, 2d, 1w) or an ISO date/time")
    p.add_argument(
        "--by",
        default="key",
        metavar="FIELDS",
        help="group by a comma-separated subset of key, pipeline, model, or 'none' for one total (default key)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _data_dir_arg(p)


def parse_since(text: str, now: float | None = None) -> float:
    """``30m`` / ``1h`` / ``2d`` / ``1w`` before ``now``, or an ISO date or time (local time unless it says)."""
    now = time.time() if now is None else now
    found = _DURATION.fullmatch(text.strip().lower())
    if found:
        return now - float(found[1]) * _SECONDS[found[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give a duration such as 30m, 1h, 2d or 1w, or a date or time such as "
            "2025-06-01 or 2025-06-01T12:00:00Z"
        ) from None


def parse_groups(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if name not in GROUPS:
            raise ConfigError(f"--by {text!r}: {name!r} is not one of key, pipeline, model (or none)")
    return names


def _utc(timestamp: float | None) -> str:
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Plain text columns, two spaces apart; columns in ``right`` aligned to the right."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _limits(record: KeyRecord) -> str:
    rate = f"{record.rate_per_minute} requests/minute" if record.rate_per_minute else "no rate limit"
    at_once = f"{record.max_concurrent} at once" if record.max_concurrent else "no limit at once"
    return f"{rate}, {at_once}"


def _db_url(args: argparse.Namespace) -> str:
    url = str(getattr(args, "db_url", "") or "")
    return check_db_url(url) if url else ""


def _existing_state(args: argparse.Namespace) -> GatewayState | None:
    """The state the command reads: PostgreSQL with ``--db-url``; else the SQLite file, ``None`` if there is none
    yet (looking creates nothing)."""
    db_url = _db_url(args)
    if not db_url and not database_path(args.data_dir).is_file():
        return None
    return open_state(args.data_dir, db_url)


def run_keys(args: argparse.Namespace) -> int:
    where = describe(args.data_dir, _db_url(args))
    if args.keys_command == "create":
        state = open_state(args.data_dir, _db_url(args))
    else:
        found = _existing_state(args)
        if found is None and args.keys_command == "revoke":
            raise ConfigError(f"no API keys in {where}; 'lpnode keys create NAME' makes one")
        if found is None:
            return _print_keys(args, [], where)
        state = found
    try:
        store = KeyStore(state)
        if args.keys_command == "create":
            key, record = store.create(
                args.name, rate_per_minute=args.rate_per_minute, max_concurrent=args.max_concurrent
            )
            if args.json:
                print(json.dumps({"key": key, **record.as_dict()}, indent=2))
            else:
                print(f"created API key {record.name!r} (id {record.id}; {_limits(record)}):")
                print()
                print(f"    {key}")
                print()
                print("This key cannot be shown again: store it now. Callers send it as 'Authorization: Bearer <key>'.")
            return 0
        if args.keys_command == "revoke":
            record = store.revoke(args.name)
            print(
                f"revoked API key {record.name!r} (id {record.id}, {record.shown_prefix}); "
                f"a running gateway refuses it within {state.key_cache_seconds:g} s"
            )
            return 0
        return _print_keys(args, store.list(), where)
    finally:
        state.close()


def _print_keys(args: argparse.Namespace, records: list[KeyRecord], where: str) -> int:
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2))
    elif not records:
        place = "--db-url URL" if _db_url(args) else f"--data-dir {args.data_dir}"
        print(f"no API keys in {where}; create one with: lpnode keys create NAME {place}")
    else:
        rows = [
            [
                r.id,
                r.name,
                r.shown_prefix,
                _utc(r.created_at),
                r.rate_per_minute or "-",
                r.max_concurrent or "-",
                "active" if r.active else f"revoked {_utc(r.revoked_at)}",
            ]
            for r in records
        ]
        print(_table(["ID", "NAME", "KEY", "CREATED", "RATE/MIN", "AT ONCE", "STATUS"], rows, right=(0, 4, 5)))
    return 0


def run_usage(args: argparse.Namespace) -> int:
    where = describe(args.data_dir, _db_url(args))
    since = parse_since(args.since) if args.since else None
    groups = parse_groups(args.by)
    state = _existing_state(args)
    summary: list[dict[str, Any]] = []
    total: list[dict[str, Any]] = []
    if state is not None:
        try:
            with UsageLog(state) as usage:
                summary = usage.summary(since=since, group_by=groups)
                total = usage.summary(since=since, group_by=()) if len(summary) > 1 else []
        finally:
            state.close()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if not summary:
        print(f"no usage recorded{f' since {_utc(since)}' if since is not None else ''} in {where}")
        return 0
    headers = [name.upper() for name in groups] + [
        "REQUESTS", "SERVED", "REFUSED", "FAILED", "CANCELLED", "UNITS", "SPEND (WEI)", "P50 MS", "MEAN MS"
    ]  # fmt: skip
    rows = [[row[g] or "-" for g in groups] + _figures(row) for row in summary]
    if groups:
        rows += [["TOTAL"] + [""] * (len(groups) - 1) + _figures(row) for row in total]
    print(_table(headers, rows, right=range(len(groups), len(headers))))
    return 0


def _figures(row: dict[str, Any]) -> list[Any]:
    return [
        row["requests"],
        row["served"],
        row["refused"],
        row["failed"],
        row["cancelled"],
        row["units"],
        row["spend_wei"] or "-",
        f"{row['latency_p50_ms']:.1f}",
        f"{row['latency_mean_ms']:.1f}",
    ]
