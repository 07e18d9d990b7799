"""The `lpnode` command: models, openapi, up — run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from procs import LPNODE, child_env, free_port, run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_openapi_document_matches_the_code() -> None:
    result = subprocess.run(
        [*LPNODE, "openapi", "--check", "--output", "docs/openapi/runner.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((ROOT / "docs/openapi/runner.json").read_text())
    body = doc["components"]["schemas"]["Body_genImageToImage"]
    assert body["required"] == ["prompt", "image"]
    assert body["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "title": "Image",
        "description": "The image to transform.",
    }


def test_openapi_check_fails_on_drift(tmp_path: Path) -> None:
    stale = tmp_path / "runner.json"
    stale.write_text("{}\n")
    result = run_cli("openapi", "--check", "--output", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_models_list_shows_ids_sizes_and_pipelines(models_dir: Path) -> None:
    result = run_cli("models", "list", "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["lpnode/tiny-upscale"].endswith("upscale")
    assert rows["lpnode/tiny-image-to-video"].endswith("image-to-video")
    assert "text-to-image, image-to-image" in rows["lpnode/tiny-sdxl-turbo"]
    listed = json.loads(run_cli("models", "list", "--models-dir", str(models_dir), "--json").stdout)
    pix2pix = next(m for m in listed if m["model_id"] == "lpnode/tiny-instruct-pix2pix")
    assert pix2pix["pipelines"] == ["image-to-image"]
    assert pix2pix["size_bytes"] > 100_000 and pix2pix["files"] > 5


def test_models_list_of_an_empty_dir_says_how_to_pull(tmp_path: Path) -> None:
    result = run_cli("models", "list", "--models-dir", str(tmp_path))
    assert result.returncode == 0
    assert "lpnode models pull" in result.stdout


def test_models_tiny_builds_once_and_rejects_unknown_pipelines(tmp_path: Path) -> None:
    first = run_cli("models", "tiny", "--pipeline", "upscale", "--models-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "built lpnode/tiny-upscale" in first.stdout
    again = run_cli("models", "tiny", "--pipeline", "upscale", "--models-dir", str(tmp_path))
    assert "already in" in again.stdout
    bad = run_cli("models", "tiny", "--pipeline", "nope", "--models-dir", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("lpnode: error: unknown pipeline 'nope'")


def test_models_pull_without_the_hub_is_one_clear_error(tmp_path: Path) -> None:
    # A closed loopback port stands in for an unreachable Hub, whatever network the machine has.
    env = child_env(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    result = run_cli("models", "pull", "stabilityai/sd-turbo", "--models-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert "lpnode: error: cannot reach the Hugging Face Hub" in result.stderr
    assert "Traceback" not in result.stderr
    bad = run_cli("models", "pull", "not-a-repo-id", "--models-dir", str(tmp_path), env=env)
    assert bad.returncode == 2
    assert "expected org/name" in bad.stderr


def test_models_check_reports_what_an_ai_models_file_needs(models_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "aiModels.json"
    config.write_text(
        json.dumps(
            [
                {
                    "pipeline": "text-to-image",
                    "model_id": "lpnode/tiny-text-to-image",
                    "warm": True,
                    "price_per_unit": 4768371,
                    "optimization_flags": {"SFAST": True},
                },
                {
                    "pipeline": "llm",
                    "model_id": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                    "url": "http://llm:8000",
                    "capacity": 4,
                    "price_per_unit": 0.18,
                    "currency": "USD",
                    "pixels_per_unit": 1000000,
                },
            ]
        )
    )
    ok = run_cli("models", "check", str(config), "--models-dir", str(models_dir))
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert re.fullmatch(r"    present \([0-9.]+ KB\)", lines.pop(2))
    assert lines == [
        'text-to-image "lpnode/tiny-text-to-image": warm, capacity 1, 4768371 wei per 1 unit(s)',
        "    optimization flags: SFAST=true",
        'llm "meta-llama/Meta-Llama-3.1-8B-Instruct": cold, capacity 4, 0.18 USD per 1000000 unit(s)',
        "    external runner at http://llm:8000",
    ]
    missing = run_cli(
        "models", "check", "upscale:stabilityai/stable-diffusion-x4-upscaler:false", "--models-dir", str(tmp_path)
    )
    assert missing.returncode == 1
    assert f"MISSING: lpnode models pull stabilityai/stable-diffusion-x4-upscaler --models-dir {tmp_path}" in (
        missing.stdout
    )


def test_models_check_prints_every_problem_of_a_bad_file(tmp_path: Path) -> None:
    config = tmp_path / "aiModels.json"
    config.write_text('[{"pipeline": "upscale", "model_id": "a/b", "price_per_unit": "1000"}, {"pipeline": "x"}]')
    result = run_cli("models", "check", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (
        'lpnode: error: aiModels.json entry 1 (upscale, "a/b"): price_per_unit must be a number, got "1000"; '
        "write it without quotes, e.g. 0.5"
    )
    # "x" is no Livepeer pipeline, so it must name the custom class serving it (its model_id may be omitted)
    assert len(lines) == 2 and lines[1].startswith("lpnode: error: aiModels.json entry 2 (x): ")
    assert '"pipeline_class": "module:Class"' in lines[1]
    assert "Traceback" not in result.stderr
