"""A run's history: what happened to it, in the order it happened, every attempt kept.

The journal's ``events`` table is append-only: a ``resume`` resets a step's row but not the
events of its earlier attempts, so the first failure (its error, traceback, worker and
``started_at``) stays visible after the run was resumed and succeeded.

* :func:`history` -- the run's events: ``run.created``, ``step.started`` (from each attempt's
  ``started_at``; a step running now from its live claim), ``step.succeeded``,
  ``step.retrying``, ``step.failed`` (with the error and its traceback), ``step.rerouted``,
  ``step.abandoned`` (an attempt whose worker died mid-step, told by the next claim),
  ``compensation.*``, ``run.<status>``, ``run.resumed`` ... ordered by time.
* :func:`attempt_log` -- one step's attempts, oldest first (``get_run(id).steps[i].attempt_log``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canvasflow.workflows.runs.records import get_record
from canvasflow.workflows.runtime.connections import Connections, connections

# journal events that end one attempt of a step (a delivery that ran its body, or a child run)
ATTEMPT_ENDS = {
    "step.succeeded": "succeeded",
    "step.failed": "failed",
    "step.retrying": "retrying",
    "step.rerouted": "rerouted",
    "step.abandoned": "worker died",  # claimed by a delivery whose worker died mid-step
}


@dataclass(frozen=True)
class HistoryEvent:
    """One thing that happened to a run (``step_id`` None for the run itself)."""

    at: datetime
    event: str  # run.created | step.started | step.succeeded | step.failed | compensation.compensated ...
    step_id: str | None = None
    generation: int | None = None
    attempt: int | None = None
    worker: str | None = None
    queue: str | None = None
    error: dict[str, Any] | None = None  # type, message, traceback (failures and retries)
    data: dict[str, Any] = field(default_factory=dict)  # everything else the journal holds

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, {})}
        out["at"] = self.at.isoformat()
        return out


def _event(row: dict[str, Any]) -> HistoryEvent:
    raw = row.get("data")
    data = dict(raw) if isinstance(raw, dict) else ({} if raw is None else {"value": raw})
    error = data.pop("error", None)
    if row["event"].startswith("run.") and error is None and "type" in data and "message" in data:
        error, data = data, {}  # a run's status event holds its error as its data
    return HistoryEvent(
        at=datetime.fromisoformat(row["at"]),
        event=row["event"],
        step_id=row.get("step_id"),
        generation=data.pop("generation", None),
        attempt=data.pop("attempts", None),
        worker=data.pop("worker", None),
        queue=data.pop("queue", None),
        error=error if isinstance(error, dict) else None,
        data=data,
    )


def _started(ev: HistoryEvent) -> HistoryEvent | None:
    """The ``step.started`` of the attempt ``ev`` ended (from its ``started_at``)."""
    started = ev.data.get("started_at")
    if ev.event not in ATTEMPT_ENDS or not started:
        return None
    return HistoryEvent(
        datetime.fromisoformat(started),
        "step.started",
        ev.step_id,
        ev.generation,
        ev.attempt,
        ev.worker,
        ev.queue,
    )


def _live_starts(rt: Connections, run_id: str, ended: set[tuple[str | None, Any]]) -> list[HistoryEvent]:
    """Steps running now: their claim is in Redis, no journal event ended it yet."""
    try:
        states, info = rt.state.step_states(run_id), rt.state.step_info(run_id)
        attempts = rt.state.attempts(run_id)
    except Exception:  # Redis down: the journal alone tells
        return []
    out = []
    for unit, st in states.items():
        meta = info.get(unit) or {}
        if st == "running" and meta.get("started_at") and (unit, meta["started_at"]) not in ended:
            out.append(
                HistoryEvent(
                    datetime.fromisoformat(meta["started_at"]),
                    "step.started",
                    unit,
                    meta.get("gen"),
                    attempts.get(unit),
                    meta.get("worker"),
                    meta.get("queue"),
                )
            )
    return out


def _dedupe(events: Iterable[HistoryEvent]) -> list[HistoryEvent]:
    """One entry per attempt's end (a terminal sync may journal an end a writer journaled too)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for ev in events:
        key = (
            (ev.event, ev.step_id, ev.generation, ev.attempt, ev.data.get("started_at"))
            if ev.event in ATTEMPT_ENDS or ev.event == "step.synced"
            else None
        )
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(ev)
    return out


def run_history(rt: Connections, run_id: str) -> list[HistoryEvent]:
    rows = [_event(r) for r in rt.store.events(run_id)]
    events = _dedupe(rows)
    starts = [s for s in (_started(ev) for ev in events) if s is not None]
    ended = {(ev.step_id, ev.data.get("started_at")) for ev in events if ev.event in ATTEMPT_ENDS}
    everything = [*events, *starts, *_live_starts(rt, run_id, ended)]
    # by time; at one instant a start before what it started, the journal's order otherwise
    order = {id(ev): i for i, ev in enumerate(everything)}
    return sorted(everything, key=lambda ev: (ev.at, ev.event != "step.started", order[id(ev)]))


def history(run_id: str) -> list[HistoryEvent]:
    """The run's events in the order they happened (RunNotFound for an unknown id)."""
    get_record(run_id)
    return run_history(connections(), run_id)


def attempt_logs(events: Iterable[HistoryEvent]) -> dict[str, list[dict[str, Any]]]:
    """Step id -> each of its attempts, oldest first: generation, attempt, status, worker,
    queue, started_at, finished_at, error (with its traceback)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        if ev.step_id is None or (ev.event not in ATTEMPT_ENDS and ev.event != "step.synced"):
            continue
        status = ATTEMPT_ENDS.get(ev.event) or ev.data.get("status")
        if status not in ("succeeded", "failed", "retrying", "rerouted", "partial", "worker died"):
            continue
        log = out.setdefault(ev.step_id, [])
        started = ev.data.get("started_at")
        if ev.event == "step.synced" and any(a["started_at"] == started for a in log):
            continue  # the terminal sync of an attempt already journaled
        log.append(
            {
                "generation": ev.generation,
                "attempt": ev.attempt,
                "status": status,
                "worker": ev.worker,
                "queue": ev.queue,
                "started_at": started,
                "finished_at": ev.data.get("finished_at") or ev.at.isoformat(),
                "error": ev.error,
            }
        )
    return out
