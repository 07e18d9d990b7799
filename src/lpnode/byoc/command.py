"""``lpnode byoc``: register BYOC containers with an orchestrator, list them, and serve one with the kit.

    lpnode byoc register --orchestrator URL --secret S --name N --url U [--capacity N] [--price-per-unit N]
                         [--price-scaling N] [--currency wei] [--token T] [--description D]
    lpnode byoc unregister --orchestrator URL --secret S --name N
    lpnode byoc list --orchestrator URL [--json]
    lpnode byoc serve MODULE:ATTR [--name N] [--load MODULE:FUNC] [--host H] [--port P] [--token T]

The orchestrator's certificate is self-signed (as every Livepeer orchestrator's is), and these commands
talk to an orchestrator the operator runs, so its certificate is not verified.
"""

from __future__ import annotations

import argparse
import importlib
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.protocol.admin_access import admin_headers, read_admin_token

TIMEOUT = 10.0


def add_byoc_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("byoc", help="BYOC capabilities: register containers with an orchestrator, serve one")
    bsub = p.add_subparsers(dest="byoc_command", required=True, metavar="{register,unregister,list,serve}")
    orch_help = "the orchestrator, e.g. https://127.0.0.1:8935 (its self-signed certificate is not verified)"
    secret_help = "the orchestrator's --orch-secret, or a file holding it [LPNODE_ORCH_SECRET]"

    reg = bsub.add_parser("register", help="register (or replace) a BYOC container with an orchestrator")
    reg.add_argument("--orchestrator", required=True, help=orch_help)
    reg.add_argument("--secret", default="", help=secret_help)
    reg.add_argument("--name", required=True, help="capability name callers ask for, e.g. text-reversal")
    reg.add_argument("--url", required=True, help="where the orchestrator reaches the container, http://HOST:PORT")
    reg.add_argument("--capacity", type=int, default=1, help="jobs it runs at once; more get 503 (default 1)")
    reg.add_argument("--price-per-unit", type=int, default=0, help="price per second, in --currency (default 0)")
    reg.add_argument("--price-scaling", type=int, default=1, help="price = price-per-unit / this (default 1)")
    reg.add_argument("--currency", default="wei", choices=("wei", "eth"), help="default wei")
    reg.add_argument("--token", default="", help="bearer token the orchestrator sends to the container")
    reg.add_argument("--description", default="", help="free text shown in /status")

    unreg = bsub.add_parser("unregister", help="remove a BYOC capability from an orchestrator")
    unreg.add_argument("--orchestrator", required=True, help=orch_help)
    unreg.add_argument("--secret", default="", help=secret_help)
    unreg.add_argument("--name", required=True, help="capability name")

    ls = bsub.add_parser("list", help="the orchestrator's BYOC capabilities (from its /status)")
    ls.add_argument("--orchestrator", required=True, help=orch_help)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.add_argument(
        "--admin-url",
        default="",
        help="the orchestrator's admin API (e.g. http://127.0.0.1:7935): its /status also shows each container's "
        "URL, which the public one keeps to itself [token: LPNODE_ADMIN_TOKEN]",
    )

    serve = bsub.add_parser("serve", help="serve a Python function (or a ByocApp) as a BYOC container")
    serve.add_argument("target", metavar="MODULE:ATTR", help="e.g. app:app (a ByocApp) or mypkg.jobs:reverse")
    serve.add_argument("--name", default="", help="job name for a plain function (default: its name)")
    serve.add_argument("--load", default="", metavar="MODULE:FUNC", help="run once before serving jobs")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    serve.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' on jobs [BYOC_TOKEN]")


def run_byoc(args: argparse.Namespace) -> int:
    if args.byoc_command == "serve":
        return _serve(args)
    base = _base_url(args.orchestrator)
    if args.byoc_command == "list":
        if args.admin_url:
            return _list(_base_url(args.admin_url), args.json, admin_headers(read_admin_token()))
        return _list(base, args.json)
    secret = _secret(args.secret)
    if args.byoc_command == "register":
        body = {
            "name": args.name, "description": args.description, "url": args.url, "capacity": args.capacity,
            "price_per_unit": args.price_per_unit, "price_scaling": args.price_scaling, "currency": args.currency,
            "token": args.token,
        }  # fmt: skip
        _call(f"{base}/capability/register", json.dumps(body).encode(), {"Authorization": secret})
        entry = next((c for c in _status(base, {}) if c.get("name") == args.name), None)
        state = "healthy" if entry and entry.get("healthy") else f"not healthy yet ({(entry or {}).get('last_error')})"
        print(f"registered {args.name} -> {args.url} on {base}: {state}")
    else:
        _call(f"{base}/capability/unregister", args.name.encode(), {"Authorization": secret})
        print(f"unregistered {args.name} from {base}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from lpnode.byoc.kit import ByocApp
    from lpnode.logs import configure_logging

    configure_logging("info")
    target = _import(args.target)
    if isinstance(target, ByocApp):
        app = target
        if args.token is not None:
            app.token = args.token
    elif callable(target):
        load = _import(args.load) if args.load else None
        app = ByocApp(args.name or getattr(target, "__name__", "job"), load=load, token=args.token)
        app.add_job(app.name, target)
    else:
        raise ConfigError(f"{args.target} is neither a ByocApp nor a function")
    print(f"serving {', '.join(app.jobs) or 'no jobs'} on http://{args.host}:{args.port}", flush=True)
    app.serve(args.host, args.port)
    return 0


def _import(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{spec!r}: give MODULE:ATTR, e.g. app:app or mypkg.jobs:reverse")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{module_name} has no {attr}") from None


def _base_url(url: str) -> str:
    text = url.strip().rstrip("/")
    return text if "://" in text else "https://" + text


def _secret(value: str) -> str:
    import os

    from lpnode.protocol.orch_secret import read_secret

    secret = read_secret(value or os.environ.get("LPNODE_ORCH_SECRET", ""))
    if not secret:
        raise ConfigError("give the orchestrator's secret with --secret (or env LPNODE_ORCH_SECRET)")
    return secret


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a self-signed orchestrator the operator runs (see the module docstring)
    return context


def _call(url: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=_context()) as answer:
            data: bytes = answer.read()
            return data
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace").strip()
        raise ConfigError(f"{url} answered {exc.code}: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot reach {url}: {reason}") from None


def _status(base: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    try:
        data = json.loads(_call(f"{base}/status", None, headers))
    except ValueError:
        raise ConfigError(f"{base}/status did not answer JSON; is it an lpnode orchestrator?") from None
    entries = data.get("byoc") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{base}/status lists no BYOC capabilities; is it an lpnode orchestrator?")
    return entries


def _list(base: str, as_json: bool, headers: dict[str, str] | None = None) -> int:
    entries = _status(base, headers or {})
    if as_json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print(f"no BYOC capabilities on {base}; add one with: lpnode byoc register --orchestrator {base} ...")
        return 0
    rows = [
        (
            e["name"], e.get("url") or "(admin API only)", f"{e['in_use']}/{e['capacity']}",
            f"{e['price_per_unit']}/{e['price_scaling']} {e['currency']}/s",
            "yes" if e["healthy"] else f"no: {e['last_error']}",
        )
        for e in entries
    ]  # fmt: skip
    header = ("NAME", "URL", "IN USE", "PRICE", "HEALTHY")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths, strict=True)) + "  " + str(row[4]))
    return 0
