"""The same pipeline served the ai-runner way: a script that calls ``start_app`` with a spec.

python main.py                      # HOST/PORT default to 0.0.0.0:8000, as in ai-runner
"""

from lpnode.live.pipelines import PipelineSpec, start_app

if __name__ == "__main__":
    start_app(
        pipeline=PipelineSpec(
            name="invert",
            pipeline_cls="invert_pipeline:InvertPipeline",
            params_cls="invert_pipeline:InvertParams",
        )
    )
