"""``lpnode up``: lpnode on one machine, offline, with tiny built-in models.

Builds the tiny models into ``DATA_DIR/models`` on first run, then serves text-to-image on
``http://HOST:PORT`` and prints a request that works once the model has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from lpnode.logs import configure_logging

UP_PIPELINE = "text-to-image"
UP_MODEL = "lpnode/tiny-text-to-image"
UP_SAFETY_CHECKER = "lpnode/tiny-safety-checker"


def example_request(base_url: str) -> str:
    body = '{"prompt":"a lighthouse at dusk","width":64,"height":64,"num_inference_steps":4,"seed":42}'
    return f"curl -s {base_url}/{UP_PIPELINE} -H 'Content-Type: application/json' -d '{body}'"


def run_up(data_dir: Path, host: str, port: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configure_logging("info")
    from lpnode.runner import tiny
    from lpnode.runner.config import config_from_env
    from lpnode.runner.libraries import quiet_model_libraries
    from lpnode.runner.server import serve

    models_dir = data_dir / "models"
    quiet_model_libraries()
    built = tiny.build(models_dir, UP_PIPELINE)
    for model in built:
        print(f"built tiny model {model.model_id} in {models_dir}", flush=True)
    config = config_from_env(
        {},
        pipeline=UP_PIPELINE,
        model_id=UP_MODEL,
        model_dir=models_dir,
        host=host,
        port=port,
        safety_checker_id=UP_SAFETY_CHECKER,
    )
    shown_host = "127.0.0.1" if host in {"0.0.0.0", "::"} else host
    base_url = f"http://{shown_host}:{port}"

    def ready() -> None:
        print(
            f"\nlpnode is up: {UP_PIPELINE} with {UP_MODEL} on {base_url} (Ctrl-C to stop)\n"
            f"Try it:\n  {example_request(base_url)}\n",
            flush=True,
        )

    serve(config, on_ready=ready)
