"""What runs inside the pipeline process (see :mod:`lpnode.live.process`): load the pipeline, then run
its input, output and params loops on one event loop until the runner sets ``done``."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from lpnode.live.overlay import loading_frame
from lpnode.live.pipeline import Pipeline, PipelineSpec, VideoFrame, VideoOutput
from lpnode.logs import configure_logging, log_event

log = logging.getLogger("lpnode.live.pipeline")
POLL = 0.1
RELOAD_FAILURE_EXIT_DELAY = 0.5


class _QueueLines(logging.Handler):
    """Copies log lines to the runner (the last ones go into a ``restart`` event)."""

    def __init__(self, q: Any) -> None:
        super().__init__()
        self.q = q

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.q.put_nowait(self.format(record))


@dataclass
class _State:
    request_id: str = ""
    show_reloading_frame: bool = True
    reloading: bool = False


def main(
    spec_json: str,
    input_queue: Any,
    output_queue: Any,
    param_queue: Any,
    error_queue: Any,
    log_queue: Any,
    ready: Any,
    done: Any,
    log_level: str,
) -> None:
    _die_with_parent()
    configure_logging(log_level)
    handler = _QueueLines(log_queue)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    logging.getLogger().addHandler(handler)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    for q in (output_queue, error_queue, log_queue):
        q.cancel_join_thread()  # never hang at exit on a runner that stopped reading
    threads = os.environ.get("TORCH_THREADS", "")
    code = 0
    try:
        if threads.isdigit() and int(threads) > 0:
            import torch

            torch.set_num_threads(int(threads))
        spec = PipelineSpec.model_validate_json(spec_json)
        asyncio.run(_serve(spec, input_queue, output_queue, param_queue, error_queue, ready, done))
    except Exception as exc:
        log.error("pipeline process failed", exc_info=exc)
        with contextlib.suppress(Exception):
            error_queue.put_nowait((time.time(), _describe(exc)))
        time.sleep(0.2)  # let the queues' feeder threads deliver
        code = 1
    os._exit(code)


def _die_with_parent() -> None:
    parent = os.getppid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="lpnode-live-parent-watch", daemon=True).start()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _serve(
    spec: PipelineSpec, input_queue: Any, output_queue: Any, param_queue: Any, error_queue: Any, ready: Any, done: Any
) -> None:
    from lpnode.runner.pipelines.loader import load_pipeline_class

    cls = load_pipeline_class(spec.pipeline_cls, Pipeline)
    pipeline: Pipeline = cls()
    started = time.monotonic()
    log_event(log, "loading live pipeline", pipeline=spec.name)
    await pipeline.initialize(**spec.initial_params)
    log_event(log, "live pipeline loaded", pipeline=spec.name, seconds=round(time.monotonic() - started, 2))
    ready.set()
    state = _State()
    executor = ThreadPoolExecutor(max_workers=3, thread_name_prefix="lpnode-live-queue")
    loop = asyncio.get_running_loop()

    def report(exc: BaseException) -> None:
        log.warning("pipeline error: %s", _describe(exc))
        with contextlib.suppress(queue.Full):
            error_queue.put_nowait((time.time(), _describe(exc)))

    def send(item: tuple[Any, ...]) -> None:
        with contextlib.suppress(queue.Full):
            output_queue.put_nowait(item)

    async def inputs() -> None:
        import torch

        while True:
            item = await loop.run_in_executor(executor, _get, input_queue)
            if item is None:
                continue
            request_id, pts, num, den, array = item
            if state.reloading:
                if state.show_reloading_frame:
                    overlay = loading_frame(array, float(pts * Fraction(num, den)))
                    send((request_id, pts, num, den, overlay, True))
                continue
            tensor = torch.from_numpy(array).float().div_(255.0).unsqueeze(0)
            try:
                await pipeline.put_video_frame(VideoFrame(tensor, pts, Fraction(num, den)), request_id)
            except Exception as exc:
                report(exc)

    async def outputs() -> None:
        while True:
            try:
                out = await pipeline.get_processed_video_frame()
                array = _to_array(out)
            except Exception as exc:
                report(exc)
                await asyncio.sleep(0.05)
                continue
            tb = out.frame.time_base
            send((out.request_id, out.frame.timestamp, tb.numerator, tb.denominator, array, out.is_loading_frame))

    async def params() -> None:
        while True:
            message = await loop.run_in_executor(executor, _latest, param_queue)
            if message is None:
                continue
            state.request_id = message["request_id"]
            values = message["params"]
            state.show_reloading_frame = bool(values.get("show_reloading_frame", True))
            try:
                task = await pipeline.update_params(**values)
            except Exception as exc:
                report(exc)
                continue
            if task is None:
                continue
            state.reloading = True
            ready.clear()
            try:
                await task
            except Exception as exc:
                report(exc)
                log.error("pipeline reload failed; the process exits so the runner restarts it")
                await asyncio.sleep(RELOAD_FAILURE_EXIT_DELAY)
                done.set()
                raise
            finally:
                state.reloading = False
            ready.set()

    async def until_done() -> None:
        # ``done`` is a multiprocessing.Event (set by the runner or a signal): it cannot be awaited.
        while not done.is_set():  # noqa: ASYNC110
            await asyncio.sleep(POLL)

    tasks = [asyncio.create_task(c) for c in (inputs(), outputs(), params())]
    waiter = asyncio.create_task(until_done())
    finished, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, waiter]:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pipeline.stop(), 5)
    executor.shutdown(wait=False, cancel_futures=True)
    for task in finished:
        if task is not waiter and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _get(q: Any) -> Any:
    try:
        return q.get(timeout=POLL * 2)
    except queue.Empty:
        return None


def _latest(q: Any) -> Any:
    from lpnode.live.process import latest

    return latest(q, POLL * 2)


def _to_array(out: VideoOutput) -> np.ndarray:
    """The output tensor as (H, W, 3) uint8; a ValueError for a tensor of another shape."""
    tensor = out.frame.tensor.detach()
    if tensor.dim() == 4:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"output tensor must be (1, H, W, 3), got {tuple(out.frame.tensor.shape)}")
    array: np.ndarray = (tensor.float().clamp(0, 1) * 255).round().to(dtype=_uint8()).cpu().numpy()
    return array


def _uint8() -> Any:
    import torch

    return torch.uint8
