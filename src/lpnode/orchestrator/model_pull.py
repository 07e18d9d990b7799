"""``lpnode models pull --ai-models FILE``: every model an aiModels.json needs, fetched in one step.

Each entry's ``model_id`` is a Hugging Face repo the runner loads from the models dir; the runners of the
image pipelines (:data:`~lpnode.runner.model_files.SAFETY_CHECKED_PIPELINES`) also load the safety checker,
so it is fetched once with them, as ai-runner's ``dl_checkpoints.sh`` operators expect. Entries that keep no
files here are skipped, each with its reason: external runners (``url``), live pipelines, LLMs forwarded to
an upstream server, and custom pipelines whose ``model_id`` is not a repo id. ``warm`` changes nothing.

Models are fetched one after the other, each with huggingface_hub's progress bars on a terminal, and one
line when it is done or failed; a model that fails (not found, gated, no access) does not stop the others.
The last line sums up: how many were fetched, already present, failed. The exit status is 0 when every
model is in the models dir, 1 when one failed; an unusable aiModels.json is a ``ConfigError`` (status 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lpnode.errors import ConfigError, HubUnreachableError, ModelStoreError
from lpnode.orchestrator.ai_models import AIModelConfig, load_ai_models
from lpnode.pipelines import PIPELINES
from lpnode.runner.config import DEFAULT_SAFETY_CHECKER
from lpnode.runner.model_files import SAFETY_CHECKED_PIPELINES
from lpnode.runner.store import blob_sizes, human_size, pull

DEFAULT_EXCLUDES = ("*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.tflite")
"""Weights no lpnode runner reads (ONNX as ``dl_checkpoints.sh`` skips it, Flax, TensorFlow, TF Lite)."""


@dataclass
class WantedModel:
    """One repo to fetch and what needs it (``"text-to-image"``, ``"safety checker"``...)."""

    model_id: str
    needed_by: list[str] = field(default_factory=list)

    @property
    def why(self) -> str:
        return ", ".join(self.needed_by)


def safety_checker_default() -> str:
    """The checker runners load when none is configured: ``SAFETY_CHECKER_MODEL_ID``, else ai-runner's."""
    return os.environ.get("SAFETY_CHECKER_MODEL_ID", "") or DEFAULT_SAFETY_CHECKER


def _skip_reason(config: AIModelConfig) -> str:
    if config.external:
        return f"served by the external runner at {config.url}"
    spec = PIPELINES.get(config.pipeline)
    if spec is not None and not spec.batch:
        return "a live pipeline: its runner prepares its own models"
    if config.optimization_flags.get("LLM_UPSTREAM_URL"):
        return f"forwarded to {config.optimization_flags['LLM_UPSTREAM_URL']}"
    if config.custom and config.model_id.count("/") != 1:
        return "a custom pipeline whose model_id is not a Hugging Face repo id"
    return ""


def wanted_models(configs: Sequence[AIModelConfig], safety_checker: str) -> tuple[list[WantedModel], list[str]]:
    """The repos the entries need, each once, in the file's order with the safety checker after the first
    model that needs it; and one line per entry that needs nothing here, saying why."""
    wanted: dict[str, WantedModel] = {}
    skipped: list[str] = []
    for config in configs:
        reason = _skip_reason(config)
        if reason:
            skipped.append(f"{config.pipeline} {config.model_id}: {reason}")
            continue
        wanted.setdefault(config.model_id, WantedModel(config.model_id)).needed_by.append(config.pipeline)
        if config.pipeline in SAFETY_CHECKED_PIPELINES and safety_checker:
            checker = wanted.setdefault(safety_checker, WantedModel(safety_checker))
            if "safety checker" not in checker.needed_by:
                checker.needed_by.append("safety checker")
    for item in wanted.values():  # a model listed by several entries names each pipeline once
        item.needed_by = list(dict.fromkeys(item.needed_by))
    return list(wanted.values()), skipped


def pull_ai_models(
    value: str,
    models_dir: Path,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    token: str | None = None,
    safety_checker: str = "",
    progress: bool | None = None,
    out: TextIO | None = None,
) -> int:
    """Fetch what the aiModels.json ``value`` needs into ``models_dir``, printing one line per model and a
    summary on ``out`` (stdout); 0 when every model is there, 1 when one failed. ``include``/``exclude`` apply
    to every model (``exclude`` adds to :data:`DEFAULT_EXCLUDES`)."""
    out = out or sys.stdout
    configs, warnings = load_ai_models(value, load_classes=False)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    wanted, skipped = wanted_models(configs, safety_checker or safety_checker_default())
    for line in skipped:
        print(f"skipped {line}", file=out)
    show = sys.stderr.isatty() if progress is None else progress
    fetched = present = failed = 0
    for number, item in enumerate(wanted, start=1):
        label = f"[{number}/{len(wanted)}] {item.model_id} ({item.why})"
        if show:
            print(f"{label}: fetching", file=out, flush=True)
        before = blob_sizes(models_dir, item.model_id)
        started = time.monotonic()
        try:
            pull(item.model_id, models_dir, include, [*DEFAULT_EXCLUDES, *exclude], token=token, progress=show)
        except HubUnreachableError as exc:
            failed += 1
            print(f"{label}: failed: {exc}", file=out, flush=True)
            untried = len(wanted) - number
            if untried:  # every other model would fail the same way
                print(f"stopped: {untried} model(s) not tried", file=out)
            break
        except ModelStoreError as exc:
            failed += 1
            print(f"{label}: failed: {exc}", file=out, flush=True)
            continue
        new = {name: size for name, size in blob_sizes(models_dir, item.model_id).items() if name not in before}
        if new:
            fetched += 1
            seconds = time.monotonic() - started
            done = f"fetched {len(new)} file(s), {human_size(sum(new.values()))} in {seconds:.1f}s"
            print(f"{label}: {done}", file=out, flush=True)
        else:
            present += 1
            print(f"{label}: already present", file=out, flush=True)
    print(f"{fetched} fetched, {present} already present, {failed} failed (models dir {models_dir})", file=out)
    if not wanted and not failed:
        print("nothing to fetch: no entry keeps files in the models dir", file=out)
    return 1 if failed else 0


def pull_command(args: argparse.Namespace, models_dir: Path) -> int:
    """``lpnode models pull``: one ``MODEL_ID``, or every model of ``--ai-models FILE``."""
    if args.ai_models and args.model_id:
        raise ConfigError("give a MODEL_ID or --ai-models FILE, not both")
    if args.ai_models:
        if args.revision:
            raise ConfigError("--revision names one model's revision; it cannot be used with --ai-models")
        return pull_ai_models(
            args.ai_models,
            models_dir,
            include=args.include,
            exclude=args.exclude,
            token=args.token,
            safety_checker=args.safety_checker or "",
        )
    if not args.model_id:
        raise ConfigError("name a model (lpnode models pull ORG/NAME) or an aiModels.json (--ai-models FILE)")
    if args.safety_checker:
        raise ConfigError("--safety-checker goes with --ai-models; to fetch a checker, name it as MODEL_ID")
    path = pull(args.model_id, models_dir, args.include, args.exclude, args.revision, args.token)
    print(f"{args.model_id} is in {path}")
    return 0
