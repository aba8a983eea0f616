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
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.store.sql import EVENT_AT, SqlRunStore

log = structlog.get_logger("canvasflow.journal")


class JournalWriter:
    """Queue step records; a daemon thread writes them in batches.

    A batch the database refuses goes back to the head of the queue and is tried again,
    with a backoff doubling from ``interval`` up to ``retry_max`` seconds, until it lands:
    no record is dropped. While the database is down the queue grows; past ``max_pending``
    records, :meth:`record_step` blocks the step's process until the writer has caught up
    (the worker takes no new step meanwhile), so memory stays bounded.
    """

    def __init__(
        self, store: SqlRunStore, interval: float, *, max_pending: int = 100_000, retry_max: float = 10.0
    ) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.retry_max = retry_max
        self._items: list[tuple[str, str, str, dict[str, Any]]] = []
        self._inflight = 0  # records of the batch being written (counted against max_pending)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._room = threading.Condition(self._lock)
        self._flushing = threading.Lock()  # one batch in flight, so records land in order
        self._thread = threading.Thread(target=self._loop, name="canvasflow-journal", daemon=True)
        self._thread.start()
        atexit.register(self._flush_at_exit)

    @property
    def pending(self) -> int:
        """Records not written yet (queued, or in the batch being written)."""
        return len(self._items) + self._inflight

    def succeeded(self, run_id: str, step_id: str, result: Any, info: dict[str, Any] | None) -> None:
        """Record a step's success from its claim's ``info`` (worker, queue, times, route...)."""
        info = info or {}
        started, finished = info.get("started_at"), info.get("finished_at")
        self.record_step(
            run_id,
            step_id,
            "step.succeeded",
            status="succeeded",
            attempts=info.get("attempt", 1),
            worker=info.get("worker"),
            queue=info.get("queue"),
            task_id=info.get("task_id"),
            started_at=datetime.fromisoformat(started) if started else None,
            finished_at=datetime.fromisoformat(finished) if finished else datetime.now(UTC),
            result=result,
            error=info.get("error"),
            route=info.get("route"),
            event_data=_event_data(info),
        )

    def record_step(self, run_id: str, step_id: str, event: str, **fields: Any) -> None:
        fields.setdefault(EVENT_AT, datetime.now(UTC))  # the event's time, not its batch's
        with self._room:
            if self.pending >= self.max_pending:
                log.warning("journal backlog full: waiting for the database", pending=self.pending)
                while self.pending >= self.max_pending:
                    self._room.wait(1.0)
            self._items.append((run_id, step_id, event, fields))
        self._wake.set()

    def flush(self) -> None:
        """Write every queued record now; on failure they stay queued (in order) and this raises."""
        with self._flushing:
            with self._lock:
                items, self._items = self._items, []
                self._inflight = len(items)
            if not items:
                return
            try:
                self.store.record_many(items)
            except (OperationalError, InterfaceError, OSError):  # unreachable: keep, retry later
                self._requeue(items)
                raise
            except SQLAlchemyError:  # a record the database refuses on its own merits
                self._write_one_by_one(items)
            with self._room:
                self._inflight = 0
                self._room.notify_all()

    def _requeue(self, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        with self._lock:
            self._items[:0] = items
            self._inflight = 0

    def _write_one_by_one(self, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        for i, item in enumerate(items):
            try:
                self.store.record_many([item])
            except (OperationalError, InterfaceError, OSError):
                self._requeue(items[i:])
                raise
            except SQLAlchemyError as exc:  # would fail forever: say so loudly, keep the rest going
                log.error("journal record refused by the database", record=repr(item)[:500], error=str(exc))

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # Redis still holds them: the next terminal sync writes them
            log.error("journal records not written at exit", pending=self.pending, error=str(exc))

    def _loop(self) -> None:
        delay = 0.0
        while True:
            if not delay:
                self._wake.wait()
                self._wake.clear()
            threading.Event().wait(max(self.interval, delay))  # gather a batch, or back off
            try:
                self.flush()
                if delay:
                    log.info("journal writes again", pending=self.pending)
                delay = 0.0
            except Exception as exc:
                delay = min(max(delay * 2, self.interval, 0.25), self.retry_max)
                log.warning(
                    "journal flush failed; retrying",
                    retry_in=delay,
                    pending=self.pending,
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )


def _event_data(info: dict[str, Any]) -> dict[str, Any] | None:
    """What a step's journal event keeps beside its columns: its generation, and the delivery a
    fused or carried step ran in (its ``task_id`` is its own)."""
    data = {"generation": info["gen"]} if info.get("gen") else {}
    if info.get("delivery"):
        data["delivery"] = info["delivery"]
    return data or None


def sync_steps(rt: Any, run_id: str) -> None:
    """Write every step's final state from Redis into SQL (before a terminal status)."""
    rt.journal.flush()
    states = rt.state.step_states(run_id)
    if not states:
        return
    journaled = rt.store.step_statuses(run_id)  # one query: what each step is in SQL
    if journaled is None:
        return
    final = ("succeeded", "failed", "partial")
    stale = [sid for sid, st in states.items() if st in final and sid in journaled and journaled[sid] != st]
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
        if meta.get("gen") or meta.get("delivery"):
            row["event_data"] = _event_data(meta)
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
