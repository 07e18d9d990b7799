"""The ``lpnode`` command.

    lpnode up                       everything on one machine, offline, on 127.0.0.1 (--network devchain: paid)
    lpnode runner                   serve one pipeline + model over the ai-runner HTTP API
    lpnode orchestrator             serve an aiModels.json to Livepeer gateways (runner pool, gRPC, AI jobs)
    lpnode gateway                  the public AI API, routing jobs to orchestrators
    lpnode worker                   serve an orchestrator's jobs as a remote AI worker
    lpnode livepeer -orchestrator|-gateway|-aiWorker ...  a go-livepeer start line, run as the matching command
    lpnode keys create|list|revoke  the gateway's API keys
    lpnode usage                    what the gateway served, per key, pipeline and model
    lpnode byoc register|list|serve BYOC containers: register with an orchestrator, serve one (kit)
    lpnode models pull|list|tiny    manage the models dir (a Hugging Face cache dir)
    lpnode openapi                  write (or check) the runner's OpenAPI document
    lpnode status                   the network, the node and its runners as tables
    lpnode doctor                   check the whole loop: models, runners, advertisement, prices, a request
    lpnode dashboard --from URL     serve the network page for any gateway's /getNetworkCapabilities
    lpnode trickle serve|publish|subscribe  a trickle server and clients (live video transport)
    lpnode live play FILE           stream a video file through a gateway's live pipeline
    lpnode wallet new|show          an Ethereum keystore wallet for on-chain nodes
    lpnode deposit                  a gateway's deposit and reserve on the TicketBroker: show, fund, unlock, withdraw
    lpnode tickets                  an orchestrator's tickets: received, won, queued, redeemed, ETH earned
    lpnode devchain                 a local chain (anvil) with Livepeer's contracts, for development
    lpnode chain status|bond|...    an orchestrator on chain: stake, activation, service URI, rewards, fees

Errors an operator can fix print as one ``lpnode: error: ...`` line and exit with status 2; so does a command
that needs a pip extra this install lacks (``lpnode.extras``), naming the ``pip install`` that adds it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lpnode import __version__
from lpnode.errors import ConfigError, LpnodeError

DEFAULT_OPENAPI_PATH = Path("docs/openapi/runner.json")
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

# Where each command's flags and code live, in the order `lpnode --help` lists them: a function of this module, or
# "module:function" (imported only when its command runs, so a light command does not load every role's code).
# Each entry: the commands it adds, the function adding their parsers, and each command's handler.
_DASHBOARD, _KEYS, _PAYMENTS = "lpnode.dashboard.command", "lpnode.gateway.keys_command", "lpnode.payments.command"
_COMMANDS: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = (
    (("up",), "_up_parser", ("_cmd_up",)),
    (("runner",), "_runner_parser", ("_cmd_runner",)),
    (("orchestrator",), "lpnode.orchestrator.command:add_orchestrator_parser", ("_cmd_orchestrator",)),
    (("worker",), "lpnode.worker.command:add_worker_parser", ("_cmd_worker",)),
    (("gateway",), "lpnode.gateway.command:add_gateway_parser", ("_cmd_gateway",)),
    (("signer",), "lpnode.signer.command:add_signer_parser", ("_cmd_signer",)),
    (("livepeer",), "_livepeer_parser", ("",)),  # main() turns it into its role command before parsing
    (("keys",), f"{_KEYS}:add_keys_parser", (f"{_KEYS}:run_keys",)),
    (("usage",), f"{_KEYS}:add_usage_parser", (f"{_KEYS}:run_usage",)),
    (
        ("dashboard", "status", "doctor"),
        f"{_DASHBOARD}:add_dashboard_parsers",
        (f"{_DASHBOARD}:run_dashboard_command", f"{_DASHBOARD}:run_status_command", "_cmd_doctor"),
    ),
    (("byoc",), "lpnode.byoc.command:add_byoc_parser", ("lpnode.byoc.command:run_byoc",)),
    (("trickle",), "lpnode.trickle.command:add_trickle_parser", ("lpnode.trickle.command:run_trickle",)),
    (("live",), "lpnode.gateway.live.play_command:add_live_parser", ("lpnode.gateway.live.play_command:run_live",)),
    (
        ("wallet", "deposit", "tickets"),
        f"{_PAYMENTS}:add_payment_parsers",
        (f"{_PAYMENTS}:run_wallet", f"{_PAYMENTS}:run_deposit", f"{_PAYMENTS}:run_tickets"),
    ),
    (
        ("devchain",),
        "lpnode.payments.devchain_command:add_devchain_parser",
        ("lpnode.payments.devchain_command:run_devchain",),
    ),
    (("chain",), "lpnode.payments.chain_command:add_chain_parser", ("lpnode.payments.chain_command:run_chain",)),
    (("models",), "_models_parser", ("_cmd_models",)),
    (("openapi",), "_openapi_parser", ("_cmd_openapi",)),
)
COMMANDS = tuple(name for names, _, _ in _COMMANDS for name in names)


def _resolve(where: str) -> Callable[..., object]:
    """A function of this module by name, or ``module:function``, imported now."""
    module, _, name = where.rpartition(":")
    found: Callable[..., object] = getattr(importlib.import_module(module), name) if module else globals()[where]
    return found


def _flag_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().upper(), value.strip()


def _runner_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "runner",
        help="serve one pipeline and model over the ai-runner HTTP API",
        description="Serve one pipeline and model over the ai-runner HTTP API. Each flag defaults to the "
        "ai-runner environment variable named in brackets.",
    )
    p.add_argument("--pipeline", help="pipeline to serve, e.g. text-to-image [PIPELINE]")
    p.add_argument(
        "--pipeline-class",
        metavar="MODULE:CLASS",
        help="serve a pipeline class of your own; --pipeline names its route (docs/custom-pipelines.md) "
        "[PIPELINE_CLASS]",
    )
    p.add_argument(
        "--model-id", help="Hugging Face repo id of the model; for live-video-to-video, the live pipeline [MODEL_ID]"
    )
    p.add_argument(
        "--models-dir",
        "--model-dir",
        type=Path,
        dest="model_dir",
        help="Hugging Face cache dir holding the model [MODEL_DIR, ~/.lpnode/models]",
    )
    p.add_argument("--host", help="address to listen on [HOST, 127.0.0.1]")
    p.add_argument("--port", type=int, help="port to listen on [PORT, 8000]")
    p.add_argument("--auth-token", help="require 'Authorization: Bearer TOKEN' on job routes [AUTH_TOKEN]")
    p.add_argument("--runner-version", dest="version", help="version reported on /version [VERSION]")
    p.add_argument(
        "--optimization-flag",
        "-O",
        action="append",
        type=_flag_pair,
        metavar="KEY=VALUE",
        help="optimisation flag, e.g. -O SFAST=true (repeatable) [SFAST, DEEPCACHE, ...]",
    )
    p.add_argument(
        "--max-in-flight", type=int, help="jobs run at once [RUNNER_MAX_IN_FLIGHT; 1, or the pipeline's default]"
    )
    p.add_argument("--max-queue", type=int, help="jobs waiting beyond those; more get 503 [RUNNER_MAX_QUEUE, 4]")
    p.add_argument(
        "--safety-checker",
        dest="safety_checker_id",
        help="safety checker model id [SAFETY_CHECKER_MODEL_ID, CompVis/stable-diffusion-safety-checker]",
    )
    p.add_argument("--device", help="cuda, cuda:N, mps or cpu [RUNNER_DEVICE, first available]")
    p.add_argument("--threads", type=int, help="torch CPU threads [TORCH_THREADS, torch default]")
    p.add_argument(
        "--llm-upstream",
        dest="upstream_url",
        metavar="URL",
        help="llm: forward to this OpenAI-compatible server, e.g. http://127.0.0.1:11434 for Ollama [LLM_UPSTREAM_URL]",
    )
    p.add_argument(
        "--llm-upstream-model",
        dest="upstream_model",
        metavar="NAME",
        help="llm: the upstream's name for the model, e.g. llama3.1:8b [LLM_UPSTREAM_MODEL]",
    )
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        default=None,
        help="stop when the process that started the runner dies [RUNNER_EXIT_WITH_PARENT]",
    )
    apps = p.add_argument_group(
        "Live Runner (runner apps)",
        "register with a Live Runner orchestrator (lpnode's, or go-livepeer >= 0.9 with -useLiveRunners) by "
        "heartbeat: a batch pipeline as a single-shot app, a live pipeline as a persistent app (docs/live-runner.md)",
    )
    apps.add_argument(
        "--live-runner-orch",
        dest="app_orchestrator",
        metavar="URL",
        help="its URL, e.g. https://orch:8935 [LIVE_RUNNER_ORCH]",
    )
    apps.add_argument(
        "--orch-secret",
        dest="app_orch_secret",
        metavar="SECRET",
        help="its -orchSecret, or a file holding it [ORCH_SECRET]",
    )
    apps.add_argument(
        "--app-name", metavar="NAME", help="the app name clients look for [LIVE_RUNNER_APP_NAME, <pipeline>/<model_id>]"
    )
    apps.add_argument(
        "--app-capacity",
        type=int,
        metavar="N",
        help="sessions at once [LIVE_RUNNER_APP_CAPACITY; the runner's --max-in-flight, 1 for a live pipeline]",
    )
    apps.add_argument(
        "--app-price",
        metavar="USD[/UNIT]",
        help="price in US dollars per hour (default unit), 720p (an hour of 720p30 video) or fixed (per session), "
        "e.g. 0.5/hour; off-chain orchestrators ignore it [LIVE_RUNNER_APP_PRICE]",
    )
    apps.add_argument(
        "--public-url",
        dest="app_public_url",
        metavar="URL",
        help="this runner's URL as the orchestrator reaches it [LIVE_RUNNER_PUBLIC_URL, http://HOST:PORT]",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _models_parser(sub: Subparsers) -> None:
    p = sub.add_parser("models", help="manage the models dir (pull, list, check, tiny)")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="{pull,list,check,tiny}")
    dir_help = "Hugging Face cache dir [MODEL_DIR, ~/.lpnode/models]"

    pull = msub.add_parser("pull", help="download models from the Hugging Face Hub (resumable)")
    pull.add_argument("model_id", nargs="?", help="Hugging Face repo id, e.g. stabilityai/sd-turbo")
    pull.add_argument(
        "--ai-models",
        metavar="FILE",
        help="fetch every model this aiModels.json needs (safety checker included) instead of one MODEL_ID",
    )
    pull.add_argument(
        "--safety-checker",
        metavar="MODEL_ID",
        help="with --ai-models: the checker image runners load [SAFETY_CHECKER_MODEL_ID, "
        "CompVis/stable-diffusion-safety-checker]",
    )
    pull.add_argument("--models-dir", type=Path, help=dir_help)
    pull.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only files matching GLOB (repeatable), e.g. --include '*.fp16.safetensors'",
    )
    pull.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching GLOB")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--token", help="Hugging Face token for gated or private repos [HF_TOKEN]")

    ls = msub.add_parser("list", help="list the models in the models dir")
    ls.add_argument("--models-dir", type=Path, help=dir_help)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    check = msub.add_parser("check", help="check an aiModels.json against the models dir")
    check.add_argument("ai_models", metavar="AIMODELS", help="path of an aiModels.json, or pipeline:model_id:warm,...")
    check.add_argument("--models-dir", type=Path, help=dir_help)

    tiny = msub.add_parser("tiny", help="build small random-weight models for offline demos and tests")
    tiny.add_argument("--pipeline", default="all", help="pipeline to build for, or 'all' (default)")
    tiny.add_argument("--models-dir", type=Path, help=dir_help)
    tiny.add_argument("--force", action="store_true", help="rebuild models that already exist")


def _livepeer_parser(sub: Subparsers) -> None:
    # Only its help lives here: main() turns `lpnode livepeer ...` into the role command before parsing.
    sub.add_parser(
        "livepeer",
        help="run a go-livepeer start line unchanged (-orchestrator, -gateway, -aiWorker ...)",
        description="Run go-livepeer's command line with the binary's name changed. The role flags pick the command "
        "with go-livepeer's precedence: -orchestrator runs `lpnode orchestrator` (its own runners only with "
        "-aiWorker), -aiWorker alone `lpnode worker`, -gateway or -broadcaster `lpnode gateway`. Flags come from the "
        "command line, LP_<NAME> environment variables and the -config file; every go-livepeer flag is accepted, "
        "and one that has no effect here is named in one warning line. lpnode's own --options may follow.",
        epilog="Example: lpnode livepeer -orchestrator -aiWorker -aiModels aiModels.json -aiModelsDir ~/models "
        "-serviceAddr 127.0.0.1:8935 -orchSecret secret.txt -monitor -v 6 (docs/compatibility.md lists every flag)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``lpnode`` parser. With ``command``, only that command's flags are read in (its module imported); the
    others are bare names, enough to parse a command line that starts with ``command``."""
    parser = argparse.ArgumentParser(prog="lpnode", description="Livepeer AI network node.")
    parser.add_argument("--version", action="version", version=f"lpnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for names, add, _ in _COMMANDS:
        if command is None or command in names:
            _resolve(add)(sub)
        else:
            for name in names:
                sub.add_parser(name, add_help=False)
    return parser


def _up_parser(sub: Subparsers) -> None:
    up = sub.add_parser("up", help="run gateway, orchestrator and runners on this machine (offline, tiny models)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path("~/.lpnode").expanduser(),
        help="where models and state live (default ~/.lpnode)",
    )
    up.add_argument("--ai-models", default="", help="serve this aiModels.json instead of the tiny models")
    up.add_argument("--http-addr", default="127.0.0.1:8935", help="the gateway's API (default 127.0.0.1:8935)")
    up.add_argument("--cli-addr", default="127.0.0.1:5935", help="the gateway's admin API (default 127.0.0.1:5935)")
    up.add_argument("--orch-port", type=int, default=8936, help="the orchestrator's port (default 8936)")
    up.add_argument("--orch-secret", default="", help="orchestrator secret (default: made once, DATA_DIR/orch-secret)")
    up.add_argument(
        "--orch-cli-addr",
        default="127.0.0.1:7935",
        help="the orchestrator's admin API, or off (default 127.0.0.1:7935)",
    )
    up.add_argument(
        "--admin-token",
        default="",
        help="require this token on both admin APIs, or a file holding it [LPNODE_ADMIN_TOKEN]",
    )
    up.add_argument(
        "--network",
        choices=("offchain", "devchain"),
        default="offchain",
        help="offchain (default: nothing is paid), or devchain: a local chain, every job paid with tickets",
    )
    up.add_argument(
        "--orchestrators",
        type=int,
        default=1,
        help="how many orchestrators (default 1; on --network devchain each registered on chain with less stake "
        "and a higher price than the one before, found by the gateway on chain)",
    )


def _openapi_parser(sub: Subparsers) -> None:
    oa = sub.add_parser("openapi", help="write the runner's OpenAPI document")
    oa.add_argument("--output", type=Path, default=DEFAULT_OPENAPI_PATH, help=f"default {DEFAULT_OPENAPI_PATH}")
    oa.add_argument("--check", action="store_true", help="exit 1 if the file differs from the code")


def _cmd_runner(args: argparse.Namespace) -> int:
    from lpnode.extras import RUNNER, require

    require(RUNNER, "lpnode runner")  # before anything loads: one line, not a traceback from deep in a pipeline
    from lpnode.logs import configure_logging
    from lpnode.runner.app import resolve_pipeline
    from lpnode.runner.config import config_from_env
    from lpnode.runner.server import serve

    configure_logging(args.log_level)
    config = config_from_env(
        pipeline=args.pipeline,
        pipeline_class=args.pipeline_class,
        model_id=args.model_id,
        model_dir=args.model_dir,
        host=args.host,
        port=args.port,
        auth_token=args.auth_token,
        version=args.version,
        optimization_flags=dict(args.optimization_flag) if args.optimization_flag else None,
        max_in_flight=args.max_in_flight,
        max_queue=args.max_queue,
        safety_checker_id=args.safety_checker_id,
        device=args.device,
        threads=args.threads,
        upstream_url=args.upstream_url,
        upstream_model=args.upstream_model,
        exit_with_parent=args.exit_with_parent,
        app_orchestrator=args.app_orchestrator,
        app_orch_secret=args.app_orch_secret,
        app_name=args.app_name,
        app_capacity=args.app_capacity,
        app_price=args.app_price,
        app_public_url=args.app_public_url,
    )
    if config.pipeline_class and "" not in sys.path:
        sys.path.insert(0, "")  # like uvicorn: a module in the current directory can be named
    if config.pipeline == "live-video-to-video":
        from lpnode.live.runner_app import live_config

        config, _ = live_config(config)  # unknown live pipeline or class → one clear line
    else:
        config, _ = resolve_pipeline(config)  # unknown pipeline or class → one clear line before anything starts
    if config.app_orchestrator:
        from lpnode.runner.app_serving import serve_as_app

        serve_as_app(config)  # the same runner, registered as a Live Runner app while it runs
        return 0
    serve(config)
    return 0


def _cmd_orchestrator(args: argparse.Namespace) -> int:
    from lpnode.logs import configure_logging
    from lpnode.orchestrator.command import duty_flags, log_level, settings_from_args
    from lpnode.orchestrator.server import run_orchestrator
    from lpnode.schemas.limits import configured as configured_limits

    settings = settings_from_args(args)
    configured_limits()  # a bad LPNODE_LIMITS stops the orchestrator here, not each runner it starts
    configure_logging(log_level(args))
    if args.exit_with_parent:
        from lpnode.runner.parent_watch import exit_with_parent

        exit_with_parent()
    run_orchestrator(settings, duty_flags(args))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from lpnode.logs import configure_logging
    from lpnode.worker.command import log_level, settings_from_args
    from lpnode.worker.node import run_worker

    settings = settings_from_args(args)
    configure_logging(log_level(args))
    if args.exit_with_parent:
        from lpnode.runner.parent_watch import exit_with_parent

        exit_with_parent()
    run_worker(settings)
    return 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from lpnode.gateway.command import log_level, settings_from_args
    from lpnode.gateway.server import run_gateway
    from lpnode.logs import configure_logging
    from lpnode.schemas.limits import configured as configured_limits

    settings = settings_from_args(args)
    configured_limits()  # a bad LPNODE_LIMITS stops the gateway here, not every request later
    configure_logging(log_level(args))
    run_gateway(settings)
    return 0


def _cmd_signer(args: argparse.Namespace) -> int:
    from lpnode.logs import configure_logging
    from lpnode.signer.command import log_level, settings_from_args
    from lpnode.signer.server import run_signer

    settings = settings_from_args(args)
    configure_logging(log_level(args))
    run_signer(settings)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from lpnode.runner import store

    models_dir = (args.models_dir or store.models_dir_default()).expanduser()
    if args.models_command == "pull":
        from lpnode.orchestrator.model_pull import pull_command

        return pull_command(args, models_dir)
    elif args.models_command == "check":
        from lpnode.orchestrator.model_check import print_check

        return print_check(args.ai_models, models_dir)
    elif args.models_command == "list":
        models = store.list_models(models_dir)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "model_id": m.model_id,
                            "revision": m.revision,
                            "size_bytes": m.size_bytes,
                            "files": m.files,
                            "pipelines": list(m.pipelines),
                            "path": str(m.path),
                        }
                        for m in models
                    ],
                    indent=2,
                )
            )
        elif not models:
            print(f"no models in {models_dir}; fetch one with: lpnode models pull ORG/NAME --models-dir {models_dir}")
        else:
            width = max(len(m.model_id) for m in models)
            print(f"{'MODEL':<{width}}  {'SIZE':>9}  {'FILES':>5}  PIPELINES")
            for m in models:
                print(
                    f"{m.model_id:<{width}}  {store.human_size(m.size_bytes):>9}  {m.files:>5}  "
                    f"{', '.join(m.pipelines) or '-'}"
                )
    else:
        from lpnode.extras import RUNNER, require

        require(RUNNER, "lpnode models tiny")
        from lpnode.runner import tiny
        from lpnode.runner.libraries import quiet_model_libraries

        quiet_model_libraries()
        try:
            built = tiny.build(models_dir, args.pipeline, force=args.force)
        except ValueError as exc:  # unknown pipeline name
            raise ConfigError(str(exc)) from None
        for model in built:
            print(f"built {model.model_id}  ({model.pipeline or 'helper'}: {model.description})")
        if not built:
            print(f"tiny models for {args.pipeline} are already in {models_dir} (use --force to rebuild)")
    return 0


def _cmd_openapi(args: argparse.Namespace) -> int:
    from lpnode.extras import RUNNER, require

    require(RUNNER, "lpnode openapi")  # the document is built from the runner's pipeline classes
    from lpnode.runner.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(
                f"{args.output} is out of date; regenerate it with: lpnode openapi --output {args.output}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    # The doctor's presentation is shared; each role supplies the checks that need its own code.
    from lpnode.dashboard.command import run_doctor_command
    from lpnode.gateway.doctor import advertised
    from lpnode.orchestrator.doctor import OrchestratorFiles

    return run_doctor_command(args, OrchestratorFiles(), advertised)


def _cmd_up(args: argparse.Namespace) -> int:
    from lpnode.protocol.admin_access import read_admin_token
    from lpnode.up import run_up

    run_up(
        args.data_dir.expanduser(),
        ai_models=args.ai_models,
        http_addr=args.http_addr,
        cli_addr=args.cli_addr,
        orch_port=args.orch_port,
        orch_secret=args.orch_secret,
        orch_cli_addr=args.orch_cli_addr,
        admin_token=read_admin_token(args.admin_token),
        network=args.network,
        orchestrators=args.orchestrators,
    )
    return 0


def _go_style(argv: list[str]) -> list[str]:
    """go-livepeer's flags: ``lpnode livepeer ...`` becomes its role's command; a role command's go flags are
    spelled the way its parser reads them. Flags with no effect here are dropped with one warning line each."""
    from lpnode.go_flags import ROLE_COMMANDS, role_args
    from lpnode.go_starter import start_line

    if argv and argv[0] == "livepeer":
        line = start_line(argv[1:], os.environ)
        argv, warnings = line.argv, line.warnings
    elif argv and argv[0] in ROLE_COMMANDS:
        rest, warnings = role_args(argv[0], argv[1:])
        argv = [argv[0], *rest]
    else:
        return argv
    for warning in warnings:
        print(f"lpnode: warning: {warning}", flush=True)
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    try:
        argv = _go_style(list(sys.argv[1:] if argv is None else argv))
    except LpnodeError as exc:
        print(f"lpnode: error: {exc}", file=sys.stderr)
        return 2
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if argv[:1] == ["--version"]:
        command = ""  # no command's flags are needed
    args = build_parser(command).parse_args(argv)
    handlers = {name: run for names, _, runs in _COMMANDS for name, run in zip(names, runs, strict=True)}
    try:
        status = _resolve(handlers[args.command])(args)
        return status if isinstance(status, int) else 0
    except LpnodeError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"lpnode: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
