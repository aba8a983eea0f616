"""Structured logs as middleware: one JSON line per run, step, route and compensation event.

Turn it on in every process with
``CANVASFLOW_MIDDLEWARE='["canvasflow.workflows.telemetry.logs:EventLog"]'`` (or
``add_middleware(EventLog())``). Each line is logged by ``canvasflow.events`` with the event's
name (``step.succeeded``) and its fields: ``run_id``, ``step_id``, ``attempt``, ``worker``,
``queue``, ``duration`` ... (a failure's traceback only at DEBUG, its type and message always).

It is off by default: the runtime's own lines (``run started``, ``step failed``, ``rollback
finished`` ...) already carry ``run_id`` and ``step_id``, and a step that nobody listens to
costs nothing extra.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import structlog

from canvasflow.workflows.telemetry.hooks import (
    CompensationEvent,
    Middleware,
    RouteEvent,
    RunEvent,
    StepEvent,
)

log = structlog.get_logger("canvasflow.events")


def _fields(event: Any) -> dict[str, Any]:
    """The event's fields worth a log line: no empty values, no carrier, no traceback."""
    out = {k: v for k, v in asdict(event).items() if v not in (None, "", {}, ()) and k != "carrier"}
    error = out.get("error")
    if isinstance(error, dict):
        out["error"] = {k: v for k, v in error.items() if k != "traceback"}
    return out


class EventLog(Middleware):
    """Log every hook as one structured line (INFO; failures WARNING; dispatch and route DEBUG)."""

    def on_run_start(self, event: RunEvent) -> None:
        log.info("run.started", **_fields(event))

    def on_run_finish(self, event: RunEvent) -> None:
        level = log.info if event.status == "succeeded" else log.warning
        level("run.finished", **_fields(event))

    def on_step_dispatch(self, event: StepEvent) -> None:
        log.debug("step.dispatched", **_fields(event))

    def on_route(self, event: RouteEvent) -> None:
        log.debug("step.routed", **_fields(event))

    def on_step_start(self, event: StepEvent) -> None:
        log.info("step.started", **_fields(event))

    def on_step_success(self, event: StepEvent) -> None:
        log.info("step.succeeded", **_fields(event))

    def on_step_failure(self, event: StepEvent) -> None:
        log.warning("step.failed", **_fields(event))
        if event.error and event.error.get("traceback"):
            log.debug("step.traceback", run_id=event.run_id, step_id=event.step_id, **event.error)

    def on_step_retry(self, event: StepEvent) -> None:
        log.info("step.retrying", **_fields(event))

    def on_step_progress(self, event: StepEvent, done: float, total: float | None, note: str | None) -> None:
        log.info(
            "step.progress", run_id=event.run_id, step_id=event.step_id, done=done, total=total, note=note
        )

    def on_compensation_start(self, event: CompensationEvent) -> None:
        log.info("compensation.started", **_fields(event))

    def on_compensation_success(self, event: CompensationEvent) -> None:
        log.info("compensation.succeeded", **_fields(event))

    def on_compensation_failure(self, event: CompensationEvent) -> None:
        log.warning("compensation.failed", **_fields(event))
