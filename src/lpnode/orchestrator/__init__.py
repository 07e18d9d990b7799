"""The orchestrator: turns an aiModels.json into served capacity, for gateways and runner apps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.orchestrator.ai_models import AIModelConfig, AIModelsError, load_ai_models, parse_ai_models

__getattr__ = lazy_exports(
    __name__, {"ai_models": ("AIModelConfig", "AIModelsError", "load_ai_models", "parse_ai_models")}
)

__all__ = ["AIModelConfig", "AIModelsError", "load_ai_models", "parse_ai_models"]
