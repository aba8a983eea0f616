"""Journal writes off the hot path: a per-process writer that batches step records.

With ``acks_late`` a message stays unacknowledged until its task returns, and a worker
fetches no more than ``concurrency x prefetch`` unacknowledged messages. A SQL commit inside
the task therefore delays the *next* step's delivery: measured, it made each hop of a chain
wait for the previous hop's commit. So a step's success is queued here and written by a
background thread, many steps per transaction, within ``journal_interval`` seconds.

Redis holds every completed step's state and result, so nothing depends on the queue
surviving: when a run reaches a terminal state, :func:`sync_steps` writes every step's final
state from Redis into SQL before the run's own status is journaled (a process killed with
unflushed records loses nothing).
"""

from __future__ import annotations

import atexit
import json
import threading
from datetime import datetime
from typing import Any

from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.store.sql import SqlRunStore


class JournalWriter:
    """Queue step records; a daemon thread writes them in batches."""

    def __init__(self, store: SqlRunStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._items: list[tuple[str, str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="canvasflow-journal", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def record_step(self, run_id: str, step_id: str, event: str, **fields: Any) -> None:
        with self._lock:
            self._items.append((run_id, step_id, event, fields))
        self._wake.set()

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        if items:
            self.store.record_many(items)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            threading.Event().wait(self.interval)  # gather a batch
            try:
                self.flush()
            except Exception:  # the next terminal sync_steps writes what was lost
                import structlog

                structlog.get_logger("canvasflow.journal").exception("journal flush failed")


def sync_steps(rt: Any, run_id: str) -> None:
    """Write every step's final state from Redis into SQL (before a terminal status)."""
    rt.journal.flush()
    states = rt.state.step_states(run_id)
    if not states:
        return
    record = rt.store.get_run(run_id)
    if record is None:
        return
    final = ("succeeded", "failed", "partial")
    stale = [
        s.step_id for s in record.steps if states.get(s.step_id) in final and s.status != states[s.step_id]
    ]
    if not stale:
        return
    results = rt.state.results(run_id, stale)
    info = rt.state.step_info(run_id)
    attempts = rt.state.attempts(run_id)
    rows = []
    for sid in stale:
        meta = info.get(sid, {})
        row: dict[str, Any] = {"step_id": sid, "status": states[sid], "attempts": attempts.get(sid, 1)}
        if sid in results:
            row["result"] = results[sid]
        for key in ("worker", "queue", "task_id", "error", "route"):
            if meta.get(key):
                row[key] = meta[key]
        for key in ("started_at", "finished_at"):
            if meta.get(key):
                row[key] = datetime.fromisoformat(meta[key])
        rows.append(row)
    rt.store.record_steps(run_id, rows, "step.synced")


def sync_compensations(rt: Any, run_id: str, states: dict[str, str]) -> None:
    """Write each compensation's final state from Redis where the journal says otherwise."""
    record = rt.store.get_run(run_id)
    if record is None:
        return
    journaled = {s.step_id: s.compensation_status for s in record.steps}
    errors = {as_text(k): json.loads(v) for k, v in rt.redis.hgetall(rt.state.key(run_id, "comperr")).items()}
    rows = [
        {"step_id": unit, "compensation_status": state, "compensation_error": errors.get(unit)}
        for unit, state in states.items()
        if state in ("compensated", "compensation_failed") and journaled.get(unit, state) != state
    ]
    rt.store.record_steps(run_id, rows, "compensation.synced")
