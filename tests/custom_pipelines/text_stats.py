"""A custom pipeline doing real (tiny) work on CPU: word statistics of a text."""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from lpnode.runner.pipelines import CustomPipeline, Job, LoadContext

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


class WordCountParams(BaseModel):
    text: str = Field(description="The text to count.")
    top: int = Field(3, ge=1, le=20, description="How many of the most frequent words to list.")


class WordCountResult(BaseModel):
    words: int
    unique: int
    characters: int
    top: list[tuple[str, int]] = Field(description="The most frequent words, most frequent first.")
    model_id: str = Field(description="The model id the runner was started with.")


class WordCountPipeline(CustomPipeline[WordCountParams]):
    """Count the words of a text.

    Case is ignored; the most frequent words come first, ties in order of first appearance.
    """

    params = WordCountParams
    response = WordCountResult

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        self.stop_words = {w for w in ctx.optimization_flags.get("STOP_WORDS", "").split(",") if w}

    def run(self, params: WordCountParams, job: Job) -> WordCountResult:
        words = [w.lower() for w in WORD.findall(params.text) if w.lower() not in self.stop_words]
        if not words:
            raise ValueError("the text has no words")
        job.checkpoint()
        return WordCountResult(
            words=len(words),
            unique=len(set(words)),
            characters=len(params.text),
            top=Counter(words).most_common(params.top),
            model_id=self.model_id,
        )
