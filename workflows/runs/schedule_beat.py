"""Schedules at work: the ``canvasflow.start_scheduled`` task and beat's scheduler of the schedules file.

Run beat with the schedules file (re-read when it changes, at least every 5 s)::

    celery -A canvasflow.app beat -S canvasflow.workflows.runs.schedule_beat:ScheduleFileScheduler

Entries of the app's own ``beat_schedule`` are kept beside the file's.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from celery import beat, shared_task

from canvasflow.config.errors import CanvasflowError, StartRefused
from canvasflow.workflows.runs.lifecycle import start_run
from canvasflow.workflows.runs.schedules import SCHEDULED_TASK, beat_entry, load, schedules_path

log = structlog.get_logger("canvasflow.schedules")
ENTRY_PREFIX = "canvasflow:"  # beat entry names of the file's schedules


def slot_key(schedule: str, fired_at: float, period: float) -> str:
    """``schedule:<name>:<slot start, UTC>``: every firing within one slot gets the same key."""
    slot = math.floor(fired_at / period) * period
    spec = "seconds" if float(period).is_integer() else "milliseconds"
    return f"schedule:{schedule}:{datetime.fromtimestamp(slot, UTC).isoformat(timespec=spec)}"


# on the control queue through canvasflow's task_routes (config.celery_app.CONTROL_ROUTED)
@shared_task(name=SCHEDULED_TASK, acks_late=True, throws=(StartRefused,), max_retries=0)
def start_scheduled(
    schedule: str,
    workflow: str,
    inputs: Any = None,
    version: str | None = None,
    period: float = 60.0,
    fired_at: float | None = None,
) -> dict[str, Any]:
    """Start one run of a schedule for the slot it fired in (``fired_at``, else now); a second
    firing for that slot returns the first run. Inputs are validated again now: the workflow
    may have changed since the schedule was added. Refused: StartRefused, not retried."""
    key = slot_key(schedule, time.time() if fired_at is None else float(fired_at), float(period))
    try:
        run_id = start_run(workflow, inputs or {}, version=version, key=key, tags=(f"schedule:{schedule}",))
    except CanvasflowError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("scheduled start refused", schedule=schedule, workflow=workflow, reason=reason)
        raise StartRefused(f"schedule {schedule}: start refused: {reason}") from None
    return {"run_id": run_id, "key": key}


class ScheduleFileScheduler(beat.Scheduler):
    """Beat's schedule: the app's ``beat_schedule`` plus the schedules file, re-read when it changes.

    Each firing of a file schedule carries the time it fired (``fired_at``), so the task starts
    the run of that slot however late it is delivered."""

    max_interval = 5  # seconds between looks at the file when nothing is due sooner

    def setup_schedule(self) -> None:
        self._seen: int | None = -1
        self.install_default_entries(self.data)
        self._reload()

    def _reload(self) -> None:
        path: Path = schedules_path()
        stamp = path.stat().st_mtime_ns if path.exists() else None
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            entries = {f"{ENTRY_PREFIX}{name}": beat_entry(s) for name, s in load(path).items()}
        except CanvasflowError as exc:  # keep what runs; say what to fix
            log.error("schedules file not loaded; the previous schedules stay", error=str(exc))
            return
        self.merge_inplace({**dict(self.app.conf.beat_schedule or {}), **entries})
        log.info("schedules loaded", path=str(path), schedules=sorted(entries))

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._reload()
        return float(super().tick(*args, **kwargs))

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        if entry.task == SCHEDULED_TASK:
            entry.kwargs = {**entry.kwargs, "fired_at": time.time()}
        return super().apply_async(entry, producer, advance, **kwargs)
