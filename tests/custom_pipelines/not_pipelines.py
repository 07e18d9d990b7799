"""Things a pipeline class name can wrongly point at."""

from __future__ import annotations

from lpnode.runner.pipelines import CustomPipeline

ANSWER = 42


class Helper:
    """A class that is not a pipeline."""


class Unfinished(CustomPipeline):  # type: ignore[type-arg]
    """A pipeline that forgot to implement run()."""


class NoParams(CustomPipeline):  # type: ignore[type-arg]
    """A pipeline that forgot its params model."""

    def run(self, params: object, job: object) -> object:  # type: ignore[override]
        return params
