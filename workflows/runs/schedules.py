"""Schedules: a workflow started on a cron expression or every N seconds, through Celery beat.

A schedule is kept in the schedules file (``CANVASFLOW_SCHEDULES_FILE``, JSON), written by
``canvasflow schedule add/remove`` and read by beat's ``ScheduleFileScheduler``
(:mod:`canvasflow.workflows.runs.schedule_beat`, which notices changes while it runs). Each firing
sends ``canvasflow.start_scheduled``, which starts the run with the business key
``schedule:<name>:<slot>``: two firings for one slot (two beats running by mistake, a message
delivered twice) start one run.

An application with its own ``beat_schedule`` uses :func:`beat_entry` instead of the file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.schedules import crontab, schedule

from canvasflow.config.celery_app import SCHEDULED_TASK
from canvasflow.config.errors import InputError
from canvasflow.config.settings import get_settings
from canvasflow.workflows.authoring.definition import registry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_cron(text: str) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week); InputError if bad."""
    fields = text.split() if isinstance(text, str) else []
    if len(fields) != 5:
        raise InputError(
            f"cron {text!r} must have five fields: minute hour day-of-month month day-of-week "
            "(e.g. '*/5 * * * *': every five minutes)"
        )
    try:
        return crontab(
            minute=fields[0],
            hour=fields[1],
            day_of_month=fields[2],
            month_of_year=fields[3],
            day_of_week=fields[4],
        )
    except (ValueError, IndexError) as exc:
        raise InputError(f"cron {text!r} is not valid: {exc}") from None


def parse_every(text: str) -> float:
    """Seconds of ``"30s"``, ``"5m"``, ``"1h"``, ``"10"`` (seconds); InputError if bad."""
    match = _EVERY.match(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNIT[match.group(2) or "s"] if match else 0.0
    if seconds < 1:
        raise InputError(f"every {text!r} is not an interval of at least a second, like 30s, 5m or 1h")
    return seconds


@dataclass(frozen=True)
class Schedule:
    """Start ``workflow`` with ``inputs`` on ``cron`` or ``every`` (one of them)."""

    name: str
    workflow: str
    inputs: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    every: str | None = None
    version: str | None = None

    def check(self) -> None:
        """InputError when the name, the timing or the inputs' shape is wrong (not the workflow)."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(
                f"schedule name {self.name!r}: use letters, digits and _ . : - (at most 100 characters)"
            )
        if (self.cron is None) == (self.every is None):
            raise InputError(f"schedule {self.name}: give --cron or --every (one of them)")
        if self.cron is not None:
            parse_cron(self.cron)
        if self.every is not None:
            parse_every(self.every)
        if not isinstance(self.inputs, dict):
            raise InputError(f"schedule {self.name}: inputs must be a JSON object")

    @property
    def period(self) -> float:
        """Seconds one slot lasts: the interval, or a minute for cron (its finest step)."""
        return parse_every(self.every) if self.every is not None else 60.0

    def beat_schedule(self) -> schedule:
        if self.cron is not None:
            return parse_cron(self.cron)
        return schedule(timedelta(seconds=parse_every(self.every or "")))


def beat_entry(sched: Schedule) -> dict[str, Any]:
    """A ``beat_schedule`` entry that starts ``sched`` (for an app's own beat configuration)::

    app.conf.beat_schedule = {"nightly": beat_entry(Schedule("nightly", "report", cron="0 2 * * *"))}
    """
    sched.check()
    return {
        "task": SCHEDULED_TASK,
        "schedule": sched.beat_schedule(),
        "kwargs": {
            "schedule": sched.name,
            "workflow": sched.workflow,
            "inputs": sched.inputs,
            "version": sched.version,
            "period": sched.period,
        },
    }


def validate_workflow(sched: Schedule) -> dict[str, Any]:
    """The workflow exists (WorkflowNotFound) and takes these inputs (InputError): its validated inputs."""
    return registry.get(sched.workflow, sched.version).validate(sched.inputs)


# -- the schedules file ----------------------------------------------------------------
def schedules_path() -> Path:
    return Path(get_settings().schedules_file)


def load(path: Path | None = None) -> dict[str, Schedule]:
    """The schedules in the file (none when it does not exist); InputError naming a bad entry."""
    path = path or schedules_path()
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
        entries = raw.get("schedules", [])
        out = {}
        for entry in entries:
            sched = Schedule(**entry)
            sched.check()
            out[sched.name] = sched
        return out
    except InputError as exc:
        raise InputError(f"schedules file {path}: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(
            f"schedules file {path} is not a valid schedules file ({exc}); fix or remove it"
        ) from None


def save(schedules: dict[str, Schedule], path: Path | None = None) -> None:
    """Write the file atomically (a beat reading it sees the old or the new one, never half)."""
    path = path or schedules_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"schedules": [asdict(s) for s in sorted(schedules.values(), key=lambda s: s.name)]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def add(sched: Schedule, *, replace: bool = False, path: Path | None = None) -> Schedule:
    """Check ``sched`` (its timing, its workflow, its inputs) and write it to the file."""
    sched.check()
    validate_workflow(sched)  # kept as given: the workflow's defaults apply at each start
    current = load(path)
    if sched.name in current and not replace:
        raise InputError(f"schedule {sched.name!r} exists: remove it first, or add it with --replace")
    current[sched.name] = sched
    save(current, path)
    return sched


def remove(name: str, path: Path | None = None) -> Schedule:
    current = load(path)
    if name not in current:
        known = ", ".join(sorted(current)) or "none"
        raise InputError(f"no schedule named {name!r} (schedules: {known})")
    gone = current.pop(name)
    save(current, path)
    return gone
