"""The live runner's frame pacer, on a fake clock: frames wait for their PTS, late ones pass at once."""

from __future__ import annotations

from lpnode.live.pacing import MAX_AHEAD, MIN_SPACING, FramePacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_a_burst_of_frames_is_released_at_their_presentation_times() -> None:
    clock = FakeClock()
    pacer = FramePacer(clock, clock.sleep)
    for n in range(5):  # a whole segment decoded at once: 0, 40 ms, 80 ms, ...
        pacer.wait(n * 0.04)
    assert clock.slept == [0.04, 0.04, 0.04, 0.04]
    assert clock.now == 100.16


def test_frames_already_due_pass_without_waiting_but_never_back_to_back() -> None:
    clock = FakeClock()
    pacer = FramePacer(clock, clock.sleep)
    pacer.wait(0.0)
    clock.now += 1.0  # the input was slow
    pacer.wait(0.5)
    assert clock.slept == []
    pacer.wait(0.54)  # also late, but right after the last one: spaced by MIN_SPACING
    assert clock.slept == [MIN_SPACING]


def test_a_jump_in_timestamps_restarts_the_clock_instead_of_waiting() -> None:
    clock = FakeClock()
    pacer = FramePacer(clock, clock.sleep)
    pacer.wait(0.0)
    pacer.wait(MAX_AHEAD + 10.0)  # far ahead: resynchronise
    pacer.wait(MAX_AHEAD + 10.04)
    pacer.wait(1.0)  # backwards: resynchronise
    # Only MIN_SPACING after each resynchronisation; the frame after the jump waits for its own PTS.
    assert clock.slept == [MIN_SPACING, round(0.04 - MIN_SPACING, 6), MIN_SPACING]
