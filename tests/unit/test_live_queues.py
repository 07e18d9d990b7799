"""The live runner's drop policies: 1-frame queues that drop, params drained to the latest, the 24 fps cap."""

from __future__ import annotations

import multiprocessing
import threading

from lpnode.live.media import ByteStream, FrameRateCap
from lpnode.live.process import latest, put_or_drop


def test_a_full_frame_queue_drops_the_new_frame() -> None:
    q = multiprocessing.get_context("spawn").Queue(maxsize=1)
    try:
        assert put_or_drop(q, "frame 1")
        assert not put_or_drop(q, "frame 2")  # the pipeline is busy: dropped, never waited for
        assert q.get(timeout=5) == "frame 1"
        assert put_or_drop(q, "frame 3")
        assert q.get(timeout=5) == "frame 3"
    finally:
        q.close()
        q.join_thread()


def test_params_updates_are_drained_to_the_latest() -> None:
    q = multiprocessing.get_context("spawn").Queue()
    try:
        for i in range(5):
            q.put({"prompt": str(i)})
        got = None
        for _ in range(50):  # the queue's feeder thread delivers asynchronously
            got = latest(q, timeout=0.2)
            if got == {"prompt": "4"}:
                break
        assert got == {"prompt": "4"}
        assert latest(q, timeout=0.05) is None
    finally:
        q.close()
        q.join_thread()


def test_frame_rate_cap_keeps_24_of_60_fps() -> None:
    cap = FrameRateCap(24)
    kept = [i for i in range(600) if cap.keep(i / 60)]  # 10 s of 60 fps
    assert 238 <= len(kept) <= 242
    steady = FrameRateCap(24)
    assert all(steady.keep(i / 24) for i in range(240))  # 24 fps passes untouched
    late = FrameRateCap(24)
    assert late.keep(0.0) and late.keep(5.0) and not late.keep(5.01)  # a gap resyncs on the late frame


def test_byte_stream_reads_while_fed_and_ends_on_close() -> None:
    stream = ByteStream()
    got: list[bytes] = []

    def reader() -> None:
        while chunk := stream.read(3):
            got.append(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    stream.feed(b"abcde")
    stream.feed(b"fg")
    stream.close()
    thread.join(5)
    assert b"".join(got) == b"abcdefg" and all(len(c) <= 3 for c in got)
