"""A BYOC container: reverses text, and streams words as server-sent events.

Run it:   lpnode byoc serve app:app --host 0.0.0.0 --port 9000
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from lpnode.byoc.kit import ByocApp


def load() -> dict[str, str]:
    # Load model weights here; /health answers 503 until this returns.
    time.sleep(0.1)
    return {"prefix": ">> "}


app = ByocApp("echo", load=load)


@app.job()
def echo(inputs: dict[str, Any]) -> dict[str, str]:
    if not isinstance(inputs, dict) or "text" not in inputs:
        raise ValueError('send {"text": "..."}')
    return {"text": app.loaded["prefix"] + str(inputs["text"])[::-1]}


@app.job("words")
def words(inputs: dict[str, Any]) -> Iterator[dict[str, str]]:
    for word in str(inputs.get("text", "")).split():
        yield {"word": word}
