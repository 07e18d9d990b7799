"""A custom pipeline that takes many small steps (about 20 s in all), so a test can cancel it midway."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from lpnode.runner.pipelines import CustomPipeline, Job


class SlowStepsParams(BaseModel):
    steps: int = Field(2000, ge=1, le=10_000, description="Steps of 10 ms each.")


class SlowStepsResult(BaseModel):
    steps: int


class SlowStepsPipeline(CustomPipeline[SlowStepsParams]):
    """Sleep 10 ms per step, checking for cancellation between steps like a diffusion loop does."""

    params = SlowStepsParams
    response = SlowStepsResult

    def run(self, params: SlowStepsParams, job: Job) -> SlowStepsResult:
        for _ in range(params.steps):
            job.checkpoint()
            time.sleep(0.01)
        return SlowStepsResult(steps=params.steps)
