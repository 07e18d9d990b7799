"""Live pipelines, under ai-runner's import spelling: ``runner.live.pipelines`` → ``lpnode.live.pipelines``.

Built-in pipelines live in this package (``noop``, ``img2img``); :mod:`lpnode.live.registry` names them.
"""

from lpnode.live.pipeline import BaseParams, Pipeline, PipelineSpec, default_pipeline_name, start_app
from lpnode.live.registry import builtin_pipeline_spec

__all__ = ["BaseParams", "Pipeline", "PipelineSpec", "builtin_pipeline_spec", "default_pipeline_name", "start_app"]
