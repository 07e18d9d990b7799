"""The llm streamer's incremental detokenization gives exactly the text of a full decode."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lpnode.runner import tiny
from lpnode.runner.llm.transformers_chat import _DeltaStreamer
from lpnode.runner.pipelines.base import Job


class _ImmediateLoop:
    """Stands in for the event loop: runs call_soon_threadsafe callbacks at once."""

    def call_soon_threadsafe(self, callback: Any, *args: Any) -> None:
        callback(*args)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    models = tmp_path_factory.mktemp("models")
    tiny.build(Path(models), "llm")
    return AutoTokenizer.from_pretrained("lpnode/tiny-llm", cache_dir=str(models), local_files_only=True)


@pytest.mark.parametrize(
    "text", ["hello world, how are you today?", "héllo wörld ✓ 日本語 — done", "numbers 0 1 2\nnew line  two spaces"]
)
def test_pieces_join_to_the_full_decode(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    job = Job()
    streamer = _DeltaStreamer(tokenizer, _ImmediateLoop(), queue, job)  # type: ignore[arg-type]
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt: skipped
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    pieces = []
    while not queue.empty():
        piece, count = queue.get_nowait()
        pieces.append(piece)
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces)  # never half a character
    assert count == len(ids) == job.steps_done
