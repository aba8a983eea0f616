"""The clock ``run_inline`` measures deadlines by: a :class:`FakeClock` that a test moves by
hand, so a workflow's ``timeout``, ``start_to_close`` and ``schedule_to_start`` can be tested
in a unit test without waiting for them.

    clock = FakeClock()
    @step(start_to_close=30)
    def slow(...):
        clock.advance(31)            # the body "takes" 31 s
    run_inline(wf, {...}, clock=clock).step("0.slow").error["type"] == "DeadlineExceeded"

Durable timers, when they exist, are meant to read the same clock.
"""

from __future__ import annotations

from typing import Protocol

from canvasflow.config.errors import InputError


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on this clock (only differences matter)."""
        ...


class FakeClock:
    """A clock that stands still until told: ``advance(seconds)`` (or ``sleep``, its alias for
    code that sleeps through a clock it was handed)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock on by ``seconds`` (>= 0); the new time."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise InputError(f"FakeClock.advance: seconds must be a number >= 0, got {seconds!r}")
        self._now += seconds
        return self._now

    sleep = advance

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:g})"
