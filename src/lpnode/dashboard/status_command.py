"""``lpnode status``: the dashboard's facts as tables in the terminal.

For the gateway: every pipeline, model and orchestrator offer (warm, in use, prices, and for an lpnode
gateway its latency, success rate and errors), read from ``/dashboard/data.json`` or, for go-livepeer, from
``/getNetworkCapabilities`` (give its CLI address). For the orchestrator: its models and runners from
``/status``, and its BYOC capabilities and remote workers when it has them. Pointed at the orchestrator's
admin API (``http://127.0.0.1:7935``) it shows runner PIDs too, which its public port keeps to itself. An
admin API that asks for a token gets ``admin_token``. On chain both add their payments
(:mod:`lpnode.dashboard.payments_view`): the gateway's wallet, funds and tickets sent per orchestrator (its
credits with each on the admin port), the orchestrator's wallet, tickets and earnings (the senders' balances
on the admin API only). A target that does not answer gets one line saying so,
and the exit status is 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from lpnode.dashboard.fetch import Unreachable, base_url, get_json
from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.payments_view import clean, print_gateway_payments, print_orchestrator_payments
from lpnode.dashboard.sources import NODE_STATUS_PATH
from lpnode.dashboard.units import OUTPUT_UNITS, readable_wei
from lpnode.protocol.admin_access import admin_headers

DEFAULT_GATEWAY = "http://127.0.0.1:8935"
DEFAULT_ORCHESTRATOR = "https://127.0.0.1:8936"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: columns padded to their widest cell, ``-`` for empty cells, control characters
    (a hostile node's escape sequences, newlines) replaced by ``?``."""
    cells = [["-" if c is None or c == "" else clean(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def gateway_data(gateway: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The gateway's network view: lpnode's ``/dashboard/data.json``, else built from ``/getNetworkCapabilities``."""
    root = base_url(gateway)
    try:
        data: dict[str, Any] = get_json(f"{root}/dashboard/data.json", headers=headers)
        return data
    except Unreachable as first:
        try:
            document = get_json(f"{root}/getNetworkCapabilities", headers=headers)
        except Unreachable:
            raise first from None
    return {"measured": False, "unreachable": [], **network_view(document)}


def _wei(text: str) -> str:
    return readable_wei(text)


def _rate(offer: dict[str, Any]) -> str:
    rate = offer.get("success_rate")
    if rate is None:
        return ""
    return f"{rate * 100:.0f}% of {offer.get('successes', 0) + offer.get('failures', 0)}"


def print_gateway(data: dict[str, Any], out: TextIO) -> None:
    measured = bool(data.get("measured"))
    headers = ["PIPELINE", "MODEL", "ORCHESTRATOR", "WARM", "IN USE", "PRICE/UNIT", "PER OUTPUT", "RUNNER"]
    headers += ["LATENCY", "SUCCESS", "LAST ERROR"] if measured else []
    rows = []
    for pipeline in data.get("pipelines", []):
        unit = OUTPUT_UNITS.get(pipeline["pipeline"])
        for model in pipeline.get("models", []):
            for offer in model.get("offers", []):
                warm = {True: "warm", False: "cold"}.get(offer.get("warm"), "?")
                per_output = _wei(offer.get("price_per_output_wei", ""))
                row = [
                    pipeline["pipeline"], model["model_id"], offer.get("orchestrator", ""), warm,
                    f"{offer.get('in_use', 0)}/{offer.get('capacity', 0)}", _wei(offer.get("price_wei", "")),
                    f"{per_output} per {unit.label}" if per_output and unit else per_output,
                    offer.get("runner_version"),
                ]  # fmt: skip
                if measured:
                    errors = offer.get("errors") or []
                    latency = offer.get("latency_ms")
                    last = errors[-1].get("problem", "") if errors else offer.get("problem", "")
                    row += ["" if latency is None else f"{latency:g} ms", _rate(offer), last]
                rows.append(row)
    print(format_table(headers, rows) if rows else "no orchestrator offers anything yet", file=out)
    for orch in data.get("unreachable", []):
        print(f"unreachable orchestrator {clean(orch.get('url'))}: {clean(orch.get('problem')) or 'no answer yet'}",
              file=out)  # fmt: skip
    if isinstance(data.get("payments"), dict):
        print_gateway_payments(data["payments"], out, format_table)


def _generic(title: str, items: list[Any], out: TextIO) -> None:
    objects = [i for i in items if isinstance(i, dict)]
    print(f"\n{title}:", file=out)
    if not objects:
        print("  none", file=out)
        return
    keys = list(dict.fromkeys(k for item in objects for k in item))

    def show(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(v if isinstance(v, str) else json.dumps(v) for v in value)
        if isinstance(value, dict):
            return json.dumps(value)
        return "" if value is None else str(value)

    print(format_table([k.upper() for k in keys], [[show(item.get(k)) for k in keys] for item in objects]), file=out)


def print_orchestrator(status: dict[str, Any], out: TextIO) -> None:
    models = status.get("models", [])
    rows = [
        [
            m.get("pipeline"), m.get("model_id"),
            "runner app" if m.get("runner_app") else "warm" if m.get("warm") else "cold",
            f"{m.get('in_use', 0)}/{m.get('capacity', 0)}", len(m.get("runners", [])), m.get("restarts", 0),
            m.get("last_error", ""),
        ]
        for m in models
    ]  # fmt: skip
    headers = ["PIPELINE", "MODEL", "MODE", "IN USE", "RUNNERS", "RESTARTS", "LAST ERROR"]
    print(format_table(headers, rows) if rows else "no models", file=out)
    every = [r for m in models for r in m.get("runners", [])]
    pids = any("pid" in r for r in every)  # the admin API's view; the public one has none
    runners = [
        [
            r.get("name"), r.get("state"), r.get("slot"), r.get("device"),
            f"{r.get('in_use', 0)}/{r.get('capacity', 0)}",
            "" if r.get("load_seconds") is None else f"{r['load_seconds']:.1f}s", *([r.get("pid")] if pids else []),
            r.get("problem"),
        ]
        for r in every
    ]  # fmt: skip
    if runners:
        print(file=out)
        headers = ["RUNNER", "STATE", "SLOT", "DEVICE", "IN FLIGHT", "LOAD", *(["PID"] if pids else []), "PROBLEM"]
        print(format_table(headers, runners), file=out)
    for key, title in (("runner_apps", "runner apps"), ("byoc", "BYOC capabilities"), ("workers", "remote AI workers")):
        if isinstance(status.get(key), list):
            _generic(title, status[key], out)
    if isinstance(status.get("payments"), dict):
        print_orchestrator_payments(status["payments"], out, format_table)


def run_status(gateway: str | None, orchestrator: str | None, out: TextIO, admin_token: str = "") -> int:
    """Print both targets' tables; 0 when every target answered, 1 when one did not. ``admin_token`` goes to
    both targets (either may be an admin API)."""
    headers = admin_headers(admin_token)
    targets: list[tuple[str, str, Callable[[str], None]]] = []
    if gateway is not None:
        targets.append(("gateway", base_url(gateway), lambda url: print_gateway(gateway_data(url, headers), out)))
    if orchestrator is not None:
        root = base_url(orchestrator, "https")
        targets.append(
            (
                "orchestrator",
                root,
                lambda url: print_orchestrator(get_json(f"{url}{NODE_STATUS_PATH}", headers=headers), out),
            )
        )
    failed = False
    for index, (role, url, show) in enumerate(targets):
        if index:
            print(file=out)
        print(f"== {role} {url}", file=out)
        try:
            show(url)
        except Unreachable as exc:
            failed = True
            hint = " (is `lpnode up` running?)" if url in (DEFAULT_GATEWAY, DEFAULT_ORCHESTRATOR) else ""
            print(f"{role} unreachable: {exc}{hint}", file=out)
    return 1 if failed else 0
