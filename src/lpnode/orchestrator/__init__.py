"""The orchestrator: turns an aiModels.json into served capacity (configuration so far)."""

from lpnode.orchestrator.ai_models import AIModelConfig, AIModelsError, load_ai_models, parse_ai_models

__all__ = ["AIModelConfig", "AIModelsError", "load_ai_models", "parse_ai_models"]
