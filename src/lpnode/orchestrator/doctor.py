"""The orchestrator's side of ``lpnode doctor``: its aiModels.json and its models dir, read on this machine.

:class:`OrchestratorFiles` implements :class:`lpnode.dashboard.sources.NodeFiles`; the doctor
(:mod:`lpnode.dashboard.doctor`) decides what passes and prints it.
"""

from __future__ import annotations

import os
from pathlib import Path

from lpnode.dashboard.sources import ModelEntry, NodeConfig
from lpnode.orchestrator.ai_models import load_ai_models
from lpnode.orchestrator.model_pull import safety_checker_default
from lpnode.runner.model_files import SAFETY_CHECKED_PIPELINES
from lpnode.runner.store import list_models, models_dir_default

TINY_PREFIX = "lpnode/tiny-"
TINY_SAFETY_CHECKER = "lpnode/tiny-safety-checker"  # lpnode.runner.tiny's, without importing the model stack


class OrchestratorFiles:
    """An orchestrator's configuration as ``lpnode orchestrator`` reads it."""

    def read_config(self, path: Path) -> NodeConfig:
        """Every entry of the aiModels.json at ``path`` with its warnings; ``ConfigError`` when it is wrong."""
        configs, warnings = load_ai_models(str(path))
        entries = [
            ModelEntry(
                c.pipeline,
                c.model_id,
                custom=c.custom,
                external_url=c.url if c.external else "",
                needs=(_safety_checker(c.model_id),)
                if c.pipeline in SAFETY_CHECKED_PIPELINES and not c.external
                else (),
            )
            for c in configs
        ]
        return NodeConfig(entries, warnings)

    def stored_models(self, models_dir: Path) -> set[str]:
        return {m.model_id for m in list_models(models_dir)}

    def default_models_dir(self) -> Path:
        return models_dir_default()


def _safety_checker(model_id: str) -> str:
    """The checker a runner of ``model_id`` loads: ``SAFETY_CHECKER_MODEL_ID`` when set; for the tiny models
    the tiny checker ``lpnode up`` starts them with; else ai-runner's default."""
    if not os.environ.get("SAFETY_CHECKER_MODEL_ID") and model_id.startswith(TINY_PREFIX):
        return TINY_SAFETY_CHECKER
    return safety_checker_default()
