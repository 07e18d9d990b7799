"""``lpnode worker``: its flags, with go-livepeer's spellings accepted beside ours.

A go-livepeer worker start line works with the binary name changed: ``-aiWorker``, ``-orchAddr``,
``-orchSecret``, ``-aiModels``, ``-aiModelsDir``, ``-nvidia``, ``-dataDir``, ``-network offchain`` and
``-v`` mean what they mean there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lpnode.errors import ConfigError
from lpnode.logs import command_log_level
from lpnode.orchestrator.settings import parse_gpus
from lpnode.payments.settings import OFFCHAIN
from lpnode.protocol.orch_secret import read_secret
from lpnode.runner.store import DEFAULT_MODELS_DIR
from lpnode.worker.settings import WorkerSettings, orchestrator_url


def _go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true", "yes", "on"):
        return True
    if value in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="serve an orchestrator's AI jobs as a remote worker",
        description="Run a remote AI worker: start the runners of an aiModels.json, attach to an orchestrator "
        "with its secret, and serve the jobs it sends. go-livepeer spellings of the flags are accepted too.",
        allow_abbrev=False,
    )
    p.add_argument("--orch-addr", "-orchAddr", dest="orch_addr", default="", help="the orchestrator's HOST:PORT")
    p.add_argument("--orch-secret", "-orchSecret", dest="orch_secret", default="", help="its secret, or a file")
    p.add_argument("--ai-models", "-aiModels", dest="ai_models", default="", help="aiModels.json, or p:model:warm,...")
    p.add_argument(
        "--models-dir", "-aiModelsDir", dest="models_dir", type=Path, help="models dir (default ~/.lpnode/models)"
    )
    p.add_argument(
        "--data-dir",
        "-dataDir",
        dest="data_dir",
        type=Path,
        default=Path("~/.lpnode/worker"),
        help="runner logs (default ~/.lpnode/worker)",
    )
    p.add_argument("--nvidia", "-nvidia", default="", help="GPUs: all, or ids such as 0,1 (default: CPU slots)")
    p.add_argument("--slots", type=int, default=0, help="CPU runner slots without GPUs (default: one per runner)")
    p.add_argument(
        "--runners-per-gpu", "-aiRunnerContainersPerGPU", dest="runners_per_gpu", type=int, default=1, help="default 1"
    )
    p.add_argument("--safety-checker", dest="safety_checker", default="", help="safety checker model for image runners")
    p.add_argument("--network", "-network", default=OFFCHAIN, help="only offchain is served")
    p.add_argument("-aiWorker", dest="role_ai_worker", nargs="?", const=True, default=True, type=_go_bool)
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started it is gone")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("-v", dest="verbosity", type=int, help="go-livepeer verbosity (5 or more: debug)")


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    """Check the flags and build the settings; every problem is a one-line ``ConfigError``."""
    if args.network != OFFCHAIN:
        raise ConfigError(f"-network {args.network}: only off-chain mode is served here; use -network offchain")
    if not args.role_ai_worker:
        raise ConfigError("-aiWorker=false: this command runs an AI worker; leave the flag out")
    url = orchestrator_url(args.orch_addr)
    secret = read_secret(args.orch_secret)
    if not secret:
        raise ConfigError("give --orch-secret, the secret the orchestrator was started with (or a file holding it)")
    if not args.ai_models:
        raise ConfigError("give --ai-models FILE (an aiModels.json) or an inline pipeline:model_id:warm list")
    if args.slots < 0 or args.runners_per_gpu < 1:
        raise ConfigError("--slots must be 0 or more and --runners-per-gpu 1 or more")
    from lpnode.orchestrator.ai_models import load_ai_models  # the pipeline tables: only when it runs
    from lpnode.runner.pipelines import pipeline_names

    configs, warnings = load_ai_models(args.ai_models)
    served = set(pipeline_names())
    for config in configs:
        if config.pipeline not in served:
            warnings.append(f"{config.pipeline} {config.model_id!r} is skipped: remote workers serve batch pipelines")
    configs = [c for c in configs if c.pipeline in served]
    for line in warnings:
        print(f"lpnode: warning: {line}", flush=True)
    if not configs:
        raise ConfigError(f"{args.ai_models} lists no batch pipeline model; a worker needs at least one")
    data_dir = args.data_dir.expanduser()
    gpus: list[str] = []
    if args.nvidia:
        from lpnode.runner.hardware import gpu_info

        gpus = parse_gpus(args.nvidia, list(gpu_info()))
    return WorkerSettings(
        orch_url=url,
        secret=secret,
        ai_models=configs,
        models_dir=(args.models_dir or DEFAULT_MODELS_DIR).expanduser(),
        data_dir=data_dir,
        gpus=gpus,
        runners_per_gpu=args.runners_per_gpu,
        cpu_slots=args.slots,
        safety_checker=args.safety_checker,
    )


def log_level(args: argparse.Namespace) -> str:
    return command_log_level(str(args.log_level), args.verbosity)
