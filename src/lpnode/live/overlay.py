"""The loading overlay: what the output shows while a pipeline reloads (ai-runner's "Loading pipeline…"
frame): the input frame in grey, dimmed, with a bar sweeping along the bottom so the stream visibly lives."""

from __future__ import annotations

import numpy as np

SWEEP_SECONDS = 1.5


def loading_frame(rgb: np.ndarray, seconds: float) -> np.ndarray:
    """An overlay frame for the (H, W, 3) uint8 ``rgb`` input at stream time ``seconds``."""
    grey = rgb.astype(np.float32).mean(axis=2, keepdims=True) * 0.35 + 20.0
    out = np.repeat(grey, 3, axis=2).clip(0, 255).astype(np.uint8)
    height, width = out.shape[:2]
    bar_h = max(2, height // 24)
    bar_w = max(4, width // 4)
    phase = (seconds % SWEEP_SECONDS) / SWEEP_SECONDS
    left = int(phase * (width + bar_w)) - bar_w
    lo, hi = max(0, left), min(width, left + bar_w)
    top = height - 2 * bar_h
    out[top : top + bar_h, :] = 60
    if hi > lo:
        out[top : top + bar_h, lo:hi] = 230
    return out
