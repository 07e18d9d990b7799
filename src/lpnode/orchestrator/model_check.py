"""``lpnode models check``: what an aiModels.json asks for, and whether the models dir can serve it."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

from lpnode.orchestrator.ai_models import AIModelConfig, load_ai_models
from lpnode.runner.store import StoredModel, human_size, list_models


def _price(config: AIModelConfig) -> str:
    if config.price_per_unit is None:
        return "no price (off-chain, or -pricePerUnit applies)"
    unit = config.currency or "wei"
    return f"{_decimal(config.price_per_unit)} {unit} per {_decimal(config.pixels_per_unit)} unit(s)"


def _decimal(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10g}"


def _where(config: AIModelConfig, stored: dict[str, StoredModel], models_dir: Path) -> tuple[str, bool]:
    if config.external:
        return f"external runner at {config.url}", True
    if config.pipeline == "live-video-to-video":
        return "live pipeline (no files needed in the models dir)", True
    if config.custom and config.model_id not in stored:
        return f"custom pipeline {config.pipeline_class or '(declared by an installed package)'}", True
    model = stored.get(config.model_id)
    if model is None:
        return f"MISSING: lpnode models pull {config.model_id} --models-dir {models_dir}", False
    if model.pipelines and config.pipeline not in model.pipelines:
        return f"present ({human_size(model.size_bytes)}) but looks like a {', '.join(model.pipelines)} model", False
    return f"present ({human_size(model.size_bytes)})", True


def print_check(value: str, models_dir: Path) -> int:
    """Print one block per entry and the warnings; 0 when every model can be served, 1 when not.
    An unusable file raises AIModelsError (every problem, one line each)."""
    configs, warnings = load_ai_models(value)
    stored = {m.model_id: m for m in list_models(models_dir)}
    ready = True
    for config in configs:
        where, ok = _where(config, stored, models_dir)
        ready = ready and ok
        mode = "warm" if config.warm else "cold"
        print(f"{config.pipeline} {json.dumps(config.model_id)}: {mode}, capacity {config.capacity}, {_price(config)}")
        if config.optimization_flags:
            flags = " ".join(f"{k}={v}" for k, v in config.optimization_flags.items())
            print(f"    optimization flags: {flags}")
        print(f"    {where}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not configs:
        print("no models: the orchestrator will serve BYOC capabilities and remote workers only")
    return 0 if ready else 1
