"""Steps on their own capability (queue ``cap.timing``), so a timing test can give them a
worker of their own that nothing else keeps busy."""

from __future__ import annotations

import time

from canvasflow.workers.step import step


@step(name="timing.sleep", capability="timing")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@step(name="timing.collect", capability="timing")
def collect(*values: float) -> list[float]:
    return list(values)
