"""Deadlines of an inline run, measured by the clock ``run_inline`` was given: the run's
``timeout``, each step's ``schedule_to_start`` (from its wave's dispatch to its start) and
``start_to_close`` (its body's time: a worker's soft time limit, so its retries apply). The
errors are a worker's: ``DeadlineExceeded`` with the deadline's name first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from canvasflow.config.errors import DeadlineExceeded
from canvasflow.workflows.runs.inline_clock import Clock
from canvasflow.workflows.runtime.graph import StepGraph


class InlineDeadlines:
    def __init__(self, graph: StepGraph, clock: Clock | None) -> None:
        self.clock = clock
        self.limits: dict[str, dict[str, float]] = graph.options.get("deadlines") or {}
        self.timeout: float | None = graph.options.get("timeout")
        self.started = clock.now() if clock else 0.0
        self.queued: dict[str, float] = {}

    def dispatched(self, steps: list[str]) -> None:
        if self.clock is not None:
            now = self.clock.now()
            self.queued.update((sid, now) for sid in steps)

    def run_expired(self) -> DeadlineExceeded | None:
        if self.clock is None or self.timeout is None or self.clock.now() - self.started <= self.timeout:
            return None
        return DeadlineExceeded(f"timeout: the run did not finish within {self.timeout:g}s")

    def not_started(self, step_id: str) -> DeadlineExceeded | None:
        limit = self.limits.get(step_id, {}).get("schedule_to_start")
        if self.clock is None or limit is None or self.clock.now() - self.queued[step_id] <= limit:
            return None
        return DeadlineExceeded(f"schedule_to_start: no worker started it within {limit:g}s")

    def limited(self, step_id: str) -> Callable[[Callable[[], Any]], Any] | None:
        """A caller of a step's body that raises SoftTimeLimitExceeded when it took too long."""
        limit = self.limits.get(step_id, {}).get("start_to_close")
        clock = self.clock
        if clock is None or limit is None:
            return None

        def call(body: Callable[[], Any]) -> Any:
            began = clock.now()
            value = body()
            if clock.now() - began > limit:
                raise SoftTimeLimitExceeded(f"start_to_close: the body took {clock.now() - began:g}s")
            return value

        return call
