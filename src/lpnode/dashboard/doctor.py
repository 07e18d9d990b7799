"""``lpnode doctor``: "is the loop closed?" as one command, each check PASS, FAIL or SKIP.

1. the aiModels.json parses, and 2. each model's files are in the models dir (both skipped without a file);
3. the orchestrator answers ``/status``, and 4. each warm model has a loaded runner (and on which device);
5. its capabilities are advertised as seen from outside: a real ``GetOrchestrator`` gRPC call, TLS
   included, to the service address the orchestrator advertises (what a gateway dials);
6. the gateway knows the orchestrator, 7. its prices are within the gateway's caps, and 8. a small real
   request (the cheapest warm pipeline, at 64×64 or a few tokens) goes through the gateway.

On chain (the orchestrator's ``/status`` has ``payments``) the ``GetOrchestrator`` of 5 is signed with the
gateway's wallet (or skipped, saying so, without one), and :mod:`lpnode.dashboard.doctor_chain` adds: the
orchestrator is active on chain (after 3), it gave the wallet ticket params (after 5), and the gateway pays on
chain from a deposit and reserve that are not empty (after 6). With the orchestrator's ``operator`` block,
:mod:`lpnode.dashboard.doctor_operator` adds: registered (after active), its service URI on chain is the address
5 reached, and reward was called this round (after 5).

A failing check prints its likely cause and the fix. The exit status is 1 when any check fails.

What needs a role's own code comes in through :mod:`lpnode.dashboard.sources`: the orchestrator's
:class:`~lpnode.dashboard.sources.NodeFiles` (1, 2) and the gateway's
:data:`~lpnode.dashboard.sources.Advertisement` (5); ``lpnode.cli`` wires them. The rest is HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from lpnode.dashboard.doctor_chain import NO_WALLET, WALLET_FIX, check_active, check_gateway_funds, check_ticket_params
from lpnode.dashboard.doctor_operator import check_registered, check_reward, check_service_uri
from lpnode.dashboard.doctor_requests import SMALL_REQUESTS, small_request
from lpnode.dashboard.fetch import Unreachable, base_url, get_json, request
from lpnode.dashboard.network_view import pipeline_name
from lpnode.dashboard.sources import NODE_STATUS_PATH, Advertisement, GatewayWallet, ModelEntry, NodeFiles
from lpnode.errors import ConfigError
from lpnode.pipelines import PIPELINES

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
READY_STATES = ("IDLE", "OK")
REQUEST_TIMEOUT = 120.0
ADVERTISED = "advertised from outside (GetOrchestrator)"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str
    detail: str
    fix: str = ""


@dataclass
class Doctor:
    orchestrator: str
    gateway: str
    ai_models: Path | None
    models_dir: Path
    out: TextIO
    files: NodeFiles
    advertisement: Advertisement
    wallet: GatewayWallet | None = None
    """The gateway's wallet, to sign ``GetOrchestrator`` when the orchestrator is on chain."""
    checks: list[Check] | None = None
    gateway_data: dict[str, Any] | None = None

    def report(self, name: str, outcome: str, detail: str, fix: str = "") -> Check:
        check = Check(name, outcome, detail, fix)
        assert self.checks is not None
        self.checks.append(check)
        print(f"{outcome}  {name}: {detail}", file=self.out, flush=True)
        if fix:
            print(f"      fix: {fix}", file=self.out, flush=True)
        return check

    def run(self) -> int:
        self.checks = []
        configs = self.check_ai_models()
        status = self.check_orchestrator()
        service_url = str(status.get("service_url", "")) if status else ""
        chain = status.get("payments") if status and isinstance(status.get("payments"), dict) else None
        if status is not None:
            self.check_runners(status, configs)
        operator = chain.get("operator") if chain is not None else None
        if chain is not None:
            check_active(self.report, chain)
        if isinstance(operator, dict):
            check_registered(self.report, operator)
        self.check_advertised(service_url, status, chain)
        if isinstance(operator, dict):
            check_service_uri(self.report, operator, self._answered())
            check_reward(self.report, operator)
        offers = self.check_gateway(service_url)
        if chain is not None and self.gateway_data is not None:
            check_gateway_funds(self.report, self.gateway_data.get("payments"))
        if offers is not None:
            self.check_prices(offers)
            self.check_request(offers)
        failed = sum(1 for c in self.checks if c.outcome == FAIL)
        print(
            f"\n{len(self.checks)} checks: {failed} failed" if failed else f"\nall {len(self.checks)} checks passed",
            file=self.out,
        )
        return 1 if failed else 0

    def _answered(self) -> bool | None:
        """Whether the service address answered the GetOrchestrator of check 5 (None: not tried)."""
        assert self.checks is not None
        check = next((c for c in reversed(self.checks) if c.name == ADVERTISED), None)
        if check is None or check.outcome == SKIP:
            return None
        return check.outcome == PASS or " advertises " in check.detail

    # --- 1, 2: the configuration ------------------------------------------------------------------------

    def check_ai_models(self) -> list[ModelEntry] | None:
        if self.ai_models is None:
            self.report("aiModels.json", SKIP, "no --ai-models given (and none in ~/.lpnode)")
            return None
        try:
            config = self.files.read_config(self.ai_models)
        except ConfigError as exc:
            problems = "; ".join(str(exc).splitlines())
            self.report(
                "aiModels.json", FAIL, problems, f"correct {self.ai_models}; `lpnode models check` explains each entry"
            )
            return None
        entries, warnings = list(config.entries), config.warnings
        note = f" ({len(warnings)} warning(s): {'; '.join(warnings)})" if warnings else ""
        self.report("aiModels.json", PASS, f"{len(entries)} entries in {self.ai_models}{note}")
        self.check_model_files(entries, self.files.stored_models(self.models_dir))
        return entries

    def check_model_files(self, entries: list[ModelEntry], stored: Collection[str]) -> None:
        needed_by: dict[str, list[str]] = {}  # helper models (the safety checker) -> the pipelines loading them
        for entry in entries:
            for need in entry.needs:
                needed_by.setdefault(need, []).append(entry.pipeline)
            name = f"model files {entry.pipeline} {entry.model_id}"
            known = PIPELINES.get(entry.pipeline)
            if entry.external_url:
                self.report(name, PASS, f"external runner at {entry.external_url} (no files needed here)")
            elif entry.custom or (known is not None and not known.batch):
                self.report(name, SKIP, "not kept in the models dir")
            elif entry.model_id in stored:
                self.report(name, PASS, f"present in {self.models_dir}")
            else:
                self.report(
                    name, FAIL, f"not in {self.models_dir}",
                    f"lpnode models pull {entry.model_id} --models-dir {self.models_dir} (or pass --models-dir)",
                )  # fmt: skip
        for need, pipelines in needed_by.items():
            name = f"model files {need} (loaded by {', '.join(dict.fromkeys(pipelines))})"
            if need in stored:
                self.report(name, PASS, f"present in {self.models_dir}")
            else:
                self.report(
                    name, FAIL, f"not in {self.models_dir}: every request with safety_check=true (the default) fails",
                    f"lpnode models pull --ai-models {self.ai_models} --models-dir {self.models_dir}",
                )  # fmt: skip

    # --- 3, 4: the orchestrator and its runners ---------------------------------------------------------

    def check_orchestrator(self) -> dict[str, Any] | None:
        try:
            status = get_json(f"{self.orchestrator}{NODE_STATUS_PATH}")
        except Unreachable as exc:
            self.report(
                "orchestrator answers", FAIL, str(exc),
                "start it (`lpnode up` or `lpnode orchestrator`), or pass --orchestrator with its address",
            )  # fmt: skip
            return None
        if not isinstance(status, dict) or not isinstance(status.get("models"), list):
            self.report(
                "orchestrator answers",
                FAIL,
                f"{self.orchestrator}{NODE_STATUS_PATH} is not an lpnode orchestrator's status",
            )
            return None
        self.report("orchestrator answers", PASS, f"{self.orchestrator} (service address {status.get('service_url')})")
        return status

    def check_runners(self, status: dict[str, Any], configs: list[ModelEntry] | None) -> None:
        served = {(m.get("pipeline"), m.get("model_id")): m for m in status["models"] if isinstance(m, dict)}
        for config in configs or []:
            if (config.pipeline, config.model_id) not in served and not config.custom:
                self.report(
                    f"runner {config.pipeline} {config.model_id}", FAIL, "in aiModels.json but not served",
                    "the orchestrator runs another aiModels.json; restart it with this file",
                )  # fmt: skip
        for (pipeline, model_id), model in served.items():
            name = f"runner {pipeline} {model_id}"
            runners = [r for r in model.get("runners", []) if isinstance(r, dict)]
            ready = [r for r in runners if r.get("state") in READY_STATES]
            where = ", ".join(f"{r.get('device') or 'slot ' + str(r.get('slot'))} ({r.get('state')})" for r in ready)
            degraded = [str(r["problem"]) for r in ready if r.get("problem")]
            if degraded:  # it serves, in part (the runner's /health warnings, e.g. no safety checker)
                files = f"--ai-models {self.ai_models}" if self.ai_models else "MODEL_ID"
                self.report(
                    name, FAIL, f"loaded on {where}, but: {degraded[0]}",
                    f"lpnode models pull {files} --models-dir {self.models_dir}, then restart the orchestrator",
                )  # fmt: skip
            elif ready:
                self.report(name, PASS, f"loaded on {where}")
            elif model.get("error"):  # the pool gave up on it: failed to load the same way too many times
                self.report(
                    name, FAIL, f"ERROR, not restarted: {model['error']}",
                    "fix what the reason says; it starts again within seconds of its files changing in the "
                    "models dir (`lpnode models pull ...`), or when the orchestrator restarts",
                )  # fmt: skip
            elif not model.get("warm"):
                self.report(name, PASS, "cold: a runner starts on the first request")
            else:
                problem = model.get("last_error") or next((r.get("problem") for r in runners if r.get("problem")), "")
                states = ", ".join(str(r.get("state")) for r in runners) or "no runner"
                fix = "see the runner log named in the orchestrator's output; `lpnode models check` confirms the files"
                if any(r.get("state") in ("STARTING", "LOADING") for r in runners):
                    fix = "still loading: wait and run doctor again"
                self.report(name, FAIL, f"warm but not loaded ({states}){': ' + problem if problem else ''}", fix)

    # --- 5: what a gateway sees ---------------------------------------------------------------------------

    def check_advertised(
        self, service_url: str, status: dict[str, Any] | None, chain: dict[str, Any] | None = None
    ) -> None:
        name = ADVERTISED
        target = service_url or self.orchestrator
        if chain is not None and self.wallet is None:
            self.report(name, SKIP, NO_WALLET, WALLET_FIX)
            return
        try:
            info = self.advertisement(target, self.wallet) if chain is not None else self.advertisement(target)
        except ConfigError as exc:
            self.report(name, FAIL, f"cannot unlock the gateway's wallet: {exc}", WALLET_FIX)
            return
        except Unreachable as exc:
            if "sig check failed" in str(exc):
                self.report(
                    name, FAIL, f"the orchestrator refused the signed request: {exc}",
                    "the orchestrator could not verify the wallet's signature: check the wallet and the chain",
                )  # fmt: skip
                return
            self.report(
                name, FAIL, f"the service address does not answer gRPC: {exc}",
                "the service address (-serviceAddr) must be the host:port gateways can reach: a public IP or DNS "
                "name, with the port open in the firewall (and forwarded through NAT)",
            )  # fmt: skip
            return
        names: dict[str, Any] = {}
        advertised = {(pipeline_name(cap, names), model_id): warm for (cap, model_id), warm in info.models.items()}
        missing = []
        for model in (status or {}).get("models", []):
            key = (model.get("pipeline"), model.get("model_id"))
            if key not in advertised and model.get("pipeline") in PIPELINES:
                missing.append(f"{key[0]} {key[1]}")
        warm = sum(1 for w in advertised.values() if w)
        detail = f"{target} advertises {len(advertised)} model(s), {warm} warm, {info.hardware} hardware entr(ies)"
        if info.signed_by:
            detail += f", signed by {info.signed_by}"
        if missing:
            self.report(name, FAIL, f"{detail}; not advertised: {', '.join(missing)}", "check the orchestrator's log")
        else:
            self.report(name, PASS, detail)
        if chain is not None:
            check_ticket_params(self.report, info, chain)

    # --- 6, 7, 8: the gateway ----------------------------------------------------------------------------

    def check_gateway(self, service_url: str) -> list[tuple[str, str, dict[str, Any]]] | None:
        try:
            data = get_json(f"{self.gateway}/dashboard/data.json")
        except Unreachable as exc:
            if " answered 404" in str(exc):
                self.report(
                    "gateway checks", SKIP, f"{self.gateway} is not an lpnode gateway (no /dashboard/data.json)"
                )
                return None
            self.report(
                "gateway answers", FAIL, str(exc),
                "start it (`lpnode up` or `lpnode gateway`), or pass --gateway with its public address",
            )  # fmt: skip
            return None
        self.gateway_data = data if isinstance(data, dict) else None
        self.report("gateway answers", PASS, f"{self.gateway} knows {data.get('orchestrators', 0)} orchestrator(s)")
        wanted = {service_url.rstrip("/"), self.orchestrator.rstrip("/")}
        offers = [
            (p["pipeline"], m["model_id"], o)
            for p in data.get("pipelines", [])
            for m in p.get("models", [])
            for o in m.get("offers", [])
            if str(o.get("orchestrator", "")).rstrip("/") in wanted or str(o.get("url", "")).rstrip("/") in wanted
        ]
        if offers:
            self.report("gateway knows the orchestrator", PASS, f"{len(offers)} offer(s) from it")
            return offers
        problem = next(
            (u.get("problem") for u in data.get("unreachable", []) if u.get("url", "").rstrip("/") in wanted), ""
        )
        if problem:
            self.report(
                "gateway knows the orchestrator", FAIL, f"the gateway cannot reach it: {problem}",
                "the gateway dials the orchestrator's service address: check it is reachable from the gateway's host",
            )  # fmt: skip
        else:
            self.report(
                "gateway knows the orchestrator", FAIL, "no offer from this orchestrator at the gateway",
                "add it to the gateway (-orchAddr HOST:PORT, or the -orchWebhookUrl list); the gateway refreshes "
                "its orchestrators every minute",
            )  # fmt: skip
        return None

    def check_prices(self, offers: list[tuple[str, str, dict[str, Any]]]) -> None:
        over = [(p, m, o) for p, m, o in offers if o.get("over_cap")]
        for pipeline, model_id, offer in over:
            self.report(
                f"price {pipeline} {model_id}", FAIL,
                f"{offer.get('price_wei')} wei per unit is above the gateway's cap",
                "lower price_per_unit in aiModels.json, or raise the gateway's -maxPricePerUnit / "
                "-maxPricePerCapability (or POST /setMaxPriceForCapability on its admin port)",
            )  # fmt: skip
        if not over:
            priced = sum(1 for _, _, o in offers if o.get("price_wei"))
            self.report(
                "prices within the gateway's caps", PASS, f"{priced} of {len(offers)} offer(s) priced, none over a cap"
            )

    def check_request(self, offers: list[tuple[str, str, dict[str, Any]]]) -> None:
        warm = {(p, m) for p, m, o in offers if o.get("warm") and not o.get("over_cap")}
        choice = next(((p, m) for p in SMALL_REQUESTS for (q, m) in sorted(warm) if q == p), None)
        if choice is None:
            self.report("request through the gateway", SKIP, "no warm batch pipeline to try")
            return
        pipeline, model_id = choice
        data, headers = small_request(pipeline, model_id)
        started = time.monotonic()
        try:
            status, body = request(f"{self.gateway}/{pipeline}", data=data, headers=headers, timeout=REQUEST_TIMEOUT)
        except Unreachable as exc:
            self.report(f"request {pipeline} {model_id}", FAIL, str(exc), "check the gateway's log")
            return
        seconds = time.monotonic() - started
        if status == 200:
            self.report(f"request {pipeline} {model_id}", PASS, f"answered 200 in {seconds:.1f}s")
            return
        try:
            message = json.loads(body).get("error", {}).get("message", "") or body[:300].decode(errors="replace")
        except (ValueError, AttributeError):
            message = body[:300].decode(errors="replace")
        fix = {
            401: "the gateway requires an API key: run doctor against a gateway without --auth keys",
            503: "no orchestrator could take it: see the checks above and the gateway's /dashboard",
            504: "it took too long: the model may still be loading",
        }.get(status, "see the orchestrator's and the runner's logs")
        self.report(f"request {pipeline} {model_id}", FAIL, f"answered {status}: {message}", fix)


def run_doctor(
    orchestrator: str,
    gateway: str,
    ai_models: Path | None,
    models_dir: Path,
    out: TextIO,
    *,
    files: NodeFiles,
    advertisement: Advertisement,
    wallet: GatewayWallet | None = None,
) -> int:
    """Run every check against the orchestrator and gateway at these addresses, print each; 1 if one failed.
    ``wallet`` (the gateway's) signs ``GetOrchestrator`` when the orchestrator is on chain."""
    doctor = Doctor(
        base_url(orchestrator, "https"), base_url(gateway), ai_models, models_dir, out, files, advertisement, wallet
    )
    return doctor.run()
