"""Rows of the journal as records, and the times in them: what the store's reads and writes share."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from canvasflow.workflows.store.records import RunRecord, StepRecord

EVENT_AT = "at"  # a step record's field holding when its event happened (not a step column)
EVENT_DATA = "event_data"  # a step record's field: more data for its event only (not a step column)
# the step columns an event keeps: each attempt stays readable after a resume resets the row
EVENT_FIELDS = (
    "status",
    "attempts",
    "worker",
    "queue",
    "task_id",
    "started_at",
    "finished_at",
    "error",
    "compensation_status",
    "compensation_error",
    "routes",
    "wakes_at",
)
# the step columns (StepRecord's other fields are read from elsewhere: attempt_log, progress)
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord) if f.name not in StepRecord.DERIVED)


def now() -> datetime:
    return datetime.now(UTC)


def utc(at: datetime) -> datetime:
    """In UTC, as every time is stored (SQLite keeps no offset); a naive time is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def aware(at: datetime | None) -> Any:
    """SQLite hands back naive datetimes for what was written in UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def event_data(fields: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a step event keeps of its record: the fields worth history (times as ISO text)."""
    data = {k: fields[k] for k in EVENT_FIELDS if fields.get(k) is not None}
    for k, v in data.items():
        if isinstance(v, datetime):
            data[k] = utc(v).isoformat()
    if extra:
        data.update(extra)
    return data or None


def step_record(row: RowMapping) -> StepRecord:
    record = StepRecord(**{k: row[k] for k in STEP_FIELDS})
    record.started_at = aware(record.started_at)  # aware on every database, as on PostgreSQL
    record.finished_at = aware(record.finished_at)
    record.wakes_at = aware(record.wakes_at)
    return record


def run_record(row: RowMapping, steps: Iterable[RowMapping] = ()) -> RunRecord:
    return RunRecord(
        id=row["id"],
        workflow=row["workflow"],
        version=row["version"],
        status=row["status"],
        generation=row["generation"],
        inputs=row["inputs"],
        graph=row["graph"],
        created_at=aware(row["created_at"]),
        result=row["result"],
        error=row["error"],
        parent_run_id=row["parent_run_id"],
        parent_step=row["parent_step"],
        finished_at=aware(row["finished_at"]),
        key=row["run_key"],
        tags=list(row["tags"] or []),
        steps=[step_record(s) for s in steps],
    )
