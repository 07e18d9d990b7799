"""``lpnode orchestrator``: its flags, with go-livepeer's spellings accepted beside ours.

An operator's go-livepeer start script works with the binary name changed: ``-aiModels``,
``-aiModelsDir``, ``-serviceAddr``, ``-httpAddr``, ``-orchSecret``, ``-nvidia``, ``-dataDir``,
``-aiRunnerImage``, ``-aiRunnerImageOverrides``, ``-aiVerboseLogs``, ``-aiRunnerContainersPerGPU``,
``-orchestrator``, ``-aiWorker``, ``-monitor``, ``-network`` and ``-v`` mean what they mean there
(``-flag=value`` too). Off-chain is the default; the chain flags (``-network``, ``-ethUrl``, ``-ethController``,
``-ethKeystorePath``, ``-ethAcctAddr``, ``-ethPassword``, ``-maxGasPrice``, ``-ticketEV``, ``-maxFaceValue``,
``-priceFeedAddr``, ``-livePaymentInterval``) make every job a paid one (:mod:`lpnode.payments.settings`).
``-useLiveRunners``, ``-liveRunnerConfig``, ``-liveRunnerProxyUrl`` and ``-liveRunnerAddr`` host runner apps
(:mod:`lpnode.orchestrator.runner_apps`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lpnode.errors import ConfigError
from lpnode.logs import command_log_level
from lpnode.orchestrator.settings import (
    DEFAULT_CLI_ADDR,
    OrchestratorSettings,
    cli_address,
    listen_address,
    parse_gpus,
    service_url,
)
from lpnode.payments.settings import OFFCHAIN as OFFCHAIN  # the worker command shares it
from lpnode.payments.settings import add_chain_flags, chain_settings
from lpnode.protocol.admin_access import ADMIN_TOKEN_ENV, read_admin_token
from lpnode.protocol.auth_token import TOKEN_VALIDITY_SECONDS
from lpnode.protocol.orch_secret import read_secret

if TYPE_CHECKING:
    from lpnode.orchestrator.chain_duties import DutyFlags

_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


def _go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_orchestrator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "orchestrator",
        help="serve the models of an aiModels.json to Livepeer gateways",
        description="Run an orchestrator: start and supervise the runners of an aiModels.json and serve "
        "AI jobs and GetOrchestrator on one port. go-livepeer spellings of the flags are accepted too.",
        allow_abbrev=False,
    )
    p.add_argument("--ai-models", "-aiModels", dest="ai_models", help="aiModels.json, or pipeline:model_id:warm,...")
    p.add_argument(
        "--models-dir", "-aiModelsDir", dest="models_dir", type=Path, help="models dir (default DATA_DIR/models)"
    )
    p.add_argument(
        "--service-addr",
        "-serviceAddr",
        dest="service_addr",
        default="127.0.0.1:8935",
        help="public HOST:PORT gateways reach (https:// assumed; http:// serves plain) (default 127.0.0.1:8935)",
    )
    p.add_argument(
        "--http-addr", "-httpAddr", dest="http_addr", default="", help="listen HOST:PORT if not the service's"
    )
    p.add_argument(
        "--cli-addr",
        "-cliAddr",
        dest="cli_addr",
        default="",
        help=f"the admin API: HOST:PORT, or off (default {DEFAULT_CLI_ADDR}; skipped with a warning if busy)",
    )
    p.add_argument(
        "--admin-token",
        default="",
        help=f"require this token on the admin API, or a file holding it [{ADMIN_TOKEN_ENV}]",
    )
    p.add_argument("--orch-secret", "-orchSecret", dest="orch_secret", default="", help="shared secret, or a file")
    p.add_argument(
        "--runner-backend", choices=("process", "docker"), default="process", help="how runners run (default process)"
    )
    p.add_argument("--nvidia", "-nvidia", default="", help="GPUs: all, or ids such as 0,1 (default: CPU slots)")
    p.add_argument("--slots", type=int, default=0, help="CPU runner slots without GPUs (default: one per runner)")
    p.add_argument(
        "--runners-per-gpu", "-aiRunnerContainersPerGPU", dest="runners_per_gpu", type=int, default=1, help="default 1"
    )
    p.add_argument(
        "--data-dir", "-dataDir", dest="data_dir", type=Path, default=Path("~/.lpnode"), help="default ~/.lpnode"
    )
    p.add_argument("--safety-checker", dest="safety_checker", default="", help="safety checker model for image runners")
    p.add_argument("--result-ttl", type=float, default=600.0, help="seconds results stay fetchable (default 600)")
    p.add_argument(
        "--auth-token-ttl", type=int, default=TOKEN_VALIDITY_SECONDS, help="seconds a session token is valid (1800)"
    )
    p.add_argument("--runner-image", "-aiRunnerImage", dest="runner_image", default="", help="docker: default image")
    p.add_argument(
        "--runner-image-overrides", "-aiRunnerImageOverrides", dest="image_overrides", default="", help="docker: JSON"
    )
    p.add_argument(
        "--verbose-runner-logs", "-aiVerboseLogs", dest="verbose", nargs="?", const=True, default=False, type=_go_bool
    )
    p.add_argument("-orchestrator", dest="role_orchestrator", nargs="?", const=True, default=True, type=_go_bool)
    p.add_argument("-aiWorker", dest="role_ai_worker", nargs="?", const=True, default=True, type=_go_bool)
    p.add_argument("-monitor", dest="monitor", nargs="?", const=True, default=True, type=_go_bool)
    p.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one is gone"
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("-v", dest="verbosity", type=int, help="go-livepeer verbosity (5 or more: debug)")
    p.add_argument(
        "--use-live-runners", "-useLiveRunners", dest="use_live_runners", nargs="?", const=True, default=False,
        type=_go_bool, help="host runner apps (Live Runner) that register by heartbeat with --orch-secret",
    )  # fmt: skip
    p.add_argument(
        "--live-runner-config", "-liveRunnerConfig", dest="live_runner_config", type=Path, default=None,
        help="a static runners.json of runner apps (turns runner apps on)",
    )  # fmt: skip
    p.add_argument(
        "--live-runner-proxy-url", "-liveRunnerProxyUrl", dest="live_runner_proxy_url", default="",
        help="public proxy URL template with one {proxy} (default SERVICE/run/{proxy})",
    )  # fmt: skip
    p.add_argument(
        "--live-runner-addr", "-liveRunnerAddr", dest="live_runner_addr", default="",
        help="base URL runner apps use to reach this node (default: the service address)",
    )  # fmt: skip
    add_chain_flags(p, "orchestrator")
    duties = p.add_argument_group("duties on chain (with -network)")
    duties.add_argument(
        "--reward", "-reward", dest="reward", nargs="?", const=True, default=True, type=_go_bool,
        help="call reward once per round while in the active set (default true; -reward=false: off)",
    )  # fmt: skip
    duties.add_argument(
        "--initialize-round", "-initializeRound", dest="initialize_round", nargs="?", const=True, default=False,
        type=_go_bool, help="initialise each round that nobody has initialised yet (default false)",
    )  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> OrchestratorSettings:
    """Check the flags and build the settings; every problem is a one-line ``ConfigError``."""
    if not args.role_orchestrator:
        raise ConfigError("-orchestrator=false: this command runs an orchestrator; leave the flag out")
    if args.use_live_runners and not args.orch_secret and not args.live_runner_config:
        raise ConfigError("running with -useLiveRunners requires -orchSecret")
    _check_live_runner_addr(args.live_runner_addr)
    if not args.ai_models and not args.orch_secret and not args.live_runner_config:
        raise ConfigError(
            "give --ai-models FILE (an aiModels.json) or an inline pipeline:model_id:warm list, or --orch-secret "
            "to serve only BYOC capabilities and remote AI workers"
        )
    if args.slots < 0 or args.runners_per_gpu < 1 or args.auth_token_ttl < 1 or args.result_ttl <= 0:
        raise ConfigError(
            "--slots must be 0 or more, --runners-per-gpu and --auth-token-ttl 1 or more, --result-ttl positive"
        )
    # Containers hold their own code: custom pipeline classes are imported here only for local processes,
    # which (like this check) find modules in the current directory too.
    load_classes = args.runner_backend == "process"
    if load_classes and "" not in sys.path:
        sys.path.insert(0, "")
    from lpnode.orchestrator.ai_models import load_ai_models  # the pipeline tables: only when it runs
    from lpnode.runner.pipelines import pipeline_names

    configs, warnings = load_ai_models(args.ai_models, load_classes=load_classes) if args.ai_models else ([], [])
    served = {*pipeline_names(), "live-video-to-video"}  # live entries run `lpnode runner` live runners
    for config in configs:
        if config.pipeline not in served and not config.external and not config.custom:
            warnings.append(
                f"{config.pipeline} {config.model_id!r} is skipped: this node does not serve that pipeline yet"
            )
    configs = [c for c in configs if c.pipeline in served or c.external or c.custom]
    for line in warnings:
        print(f"lpnode: warning: {line}", flush=True)
    secret = read_secret(args.orch_secret)
    if not configs and not secret and not args.live_runner_config:
        raise ConfigError(
            f"{args.ai_models} lists no models; add at least one entry, or give --orch-secret to serve "
            "only BYOC capabilities and remote AI workers"
        )
    if not args.role_ai_worker and not secret:
        raise ConfigError(
            "-aiWorker=false runs no local runners (remote AI workers serve the models): give --orch-secret for them"
        )
    chain = chain_settings(args)
    data_dir = args.data_dir.expanduser()
    service = service_url(args.service_addr)
    host, port = listen_address(service, args.http_addr)
    cli_host, cli_port = cli_address(args.cli_addr or DEFAULT_CLI_ADDR)
    wildcard = {"0.0.0.0", "::"} & {cli_host, host}
    if cli_port == port and (cli_host == host or wildcard):
        raise ConfigError(f"--cli-addr {args.cli_addr or DEFAULT_CLI_ADDR} is the service port; choose another")
    gpus: list[str] = []
    if args.nvidia:
        from lpnode.runner.hardware import gpu_info

        gpus = parse_gpus(args.nvidia, list(gpu_info()))
    overrides = args.image_overrides
    if args.runner_image:
        parsed = json.loads(overrides) if overrides.strip() else {}
        if isinstance(parsed, dict):
            parsed.setdefault("default", args.runner_image)
            overrides = json.dumps(parsed)
    return OrchestratorSettings(
        ai_models=configs,
        models_dir=(args.models_dir or data_dir / "models").expanduser(),
        data_dir=data_dir,
        service_url=service,
        listen_host=host,
        listen_port=port,
        orch_secret=secret,
        local_runners=args.role_ai_worker,
        runner_backend=args.runner_backend,
        gpus=gpus,
        runners_per_gpu=args.runners_per_gpu,
        cpu_slots=args.slots,
        image_overrides=overrides,
        verbose_runner_logs=args.verbose,
        result_ttl=args.result_ttl,
        safety_checker=args.safety_checker,
        auth_token_ttl=args.auth_token_ttl,
        cli_host=cli_host,
        cli_port=cli_port,
        cli_addr_given=bool(args.cli_addr),
        admin_token=read_admin_token(args.admin_token),
        chain=chain if chain.on_chain else None,
        use_live_runners=args.use_live_runners,
        live_runner_config=args.live_runner_config.expanduser() if args.live_runner_config else None,
        live_runner_proxy_url=args.live_runner_proxy_url.strip(),
        live_runner_addr=args.live_runner_addr.strip().rstrip("/"),
    )


def _check_live_runner_addr(value: str) -> None:
    """``-liveRunnerAddr``: empty, or an absolute http(s) URL with a host (go-livepeer's words)."""
    text = value.strip()
    if not text:
        return
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname or "://" not in text:
        raise ConfigError("invalid -liveRunnerAddr: must be an absolute URL")
    if parts.scheme not in ("http", "https"):
        raise ConfigError("invalid -liveRunnerAddr: scheme must be http or https")


def duty_flags(args: argparse.Namespace) -> DutyFlags:
    """``-reward`` and ``-initializeRound`` (they only act on chain)."""
    from lpnode.orchestrator.chain_duties import DutyFlags  # loads the chain code: only when running one

    return DutyFlags(reward=bool(args.reward), initialize_round=bool(args.initialize_round))


def log_level(args: argparse.Namespace) -> str:
    return command_log_level(str(args.log_level), args.verbosity)
