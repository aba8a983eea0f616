"""The SQLAlchemy run store: SQLite (WAL, several worker processes) by default, PostgreSQL in production.

Status changes are guarded in the database: ``UPDATE ... WHERE status IN (:expected)`` and
a rowcount check, so two processes racing on one run cannot both win.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Table, bindparam, create_engine, event, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from canvasflow.workflows.store.models import DefinitionRow, EventRow, RunRow, SignalRow, StepRow
from canvasflow.workflows.store.records import RunRecord, StepRecord


def now() -> datetime:
    return datetime.now(UTC)


_STEPS = cast(Table, StepRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)
_EVENT_FIELDS = ("status", "attempts", "worker", "error", "compensation_status")


def _update_steps(names: tuple[str, ...]) -> Any:
    """UPDATE of the named step columns, keyed by bound run and step ids (for executemany)."""
    return (
        _STEPS.update()
        .where(_STEPS.c.run_id == bindparam("b_run"), _STEPS.c.step_id == bindparam("b_step"))
        .values({name: bindparam(f"v_{name}", type_=_STEPS.c[name].type) for name in names})
    )


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and NORMAL sync."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def _step_record(row: StepRow) -> StepRecord:
    return StepRecord(
        step_id=row.step_id,
        task=row.task,
        status=row.status,
        kind=row.kind,
        attempts=row.attempts,
        queue=row.queue,
        worker=row.worker,
        task_id=row.task_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        error=row.error,
        compensation=row.compensation,
        compensation_status=row.compensation_status,
        compensation_error=row.compensation_error,
    )


def _run_record(row: RunRow, steps: Iterable[StepRow] = ()) -> RunRecord:
    return RunRecord(
        id=row.id,
        workflow=row.workflow,
        version=row.version,
        status=row.status,
        generation=row.generation,
        inputs=row.inputs,
        graph=row.graph,
        created_at=row.created_at,
        result=row.result,
        error=row.error,
        parent_run_id=row.parent_run_id,
        parent_step=row.parent_step,
        finished_at=row.finished_at,
        steps=[_step_record(s) for s in steps],
    )


class SqlRunStore:
    """Runs, steps and their journal in one SQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._session()

    # -- runs --------------------------------------------------------------------
    def create_run(
        self,
        *,
        run_id: str,
        workflow: str,
        version: str,
        inputs: Any,
        graph: dict[str, Any],
        steps: list[dict[str, Any]],
        status: str = "running",
        parent_run_id: str | None = None,
        parent_step: str | None = None,
    ) -> None:
        at = now()
        with self.session() as s, s.begin():
            s.add(
                RunRow(
                    id=run_id,
                    workflow=workflow,
                    version=version,
                    status=status,
                    generation=1,
                    inputs=inputs,
                    graph=graph,
                    parent_run_id=parent_run_id,
                    parent_step=parent_step,
                    created_at=at,
                )
            )
            s.flush()
            s.execute(
                insert(StepRow),
                [{"run_id": run_id, "status": "pending", "attempts": 0, **st} for st in steps],
            )
            s.add(EventRow(run_id=run_id, event="run.created", at=at, data={"workflow": workflow}))

    def get_run(self, run_id: str, *, with_steps: bool = True) -> RunRecord | None:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                return None
            steps: list[StepRow] = []
            if with_steps:
                steps = list(s.scalars(select(StepRow).where(StepRow.run_id == run_id)))
                order = {sid["id"]: i for i, sid in enumerate(row.graph.get("steps", []))}
                steps.sort(key=lambda st: order.get(st.step_id, len(order)))
            return _run_record(row, steps)

    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        q = select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)
        if status:
            q = q.where(RunRow.status == status)
        if workflow:
            q = q.where(RunRow.workflow == workflow)
        with self.session() as s:
            return [_run_record(r) for r in s.scalars(q)]

    def children(self, run_id: str) -> list[RunRecord]:
        with self.session() as s:
            rows = s.scalars(select(RunRow).where(RunRow.parent_run_id == run_id))
            return [_run_record(r) for r in rows]

    def transition_run(self, run_id: str, expected: Iterable[str], new: str, **fields: Any) -> bool:
        """Move the run to ``new`` only from one of ``expected``; True when this call did it."""
        at = now()
        if new in ("succeeded", "failed", "compensated", "compensation_failed", "cancelled"):
            fields.setdefault("finished_at", at)
        with self.session() as s, s.begin():
            res: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status.in_(list(expected)))
                .values(status=new, **fields)
            )
            won = res.rowcount == 1
            if won:
                s.add(EventRow(run_id=run_id, event=f"run.{new}", at=at, data=fields.get("error")))
            return won

    # -- steps -------------------------------------------------------------------
    def record_step(self, run_id: str, step_id: str, event_name: str, **fields: Any) -> None:
        """Write a step's new state and journal the event, in one transaction."""
        self.record_many([(run_id, step_id, event_name, fields)])

    def record_steps(self, run_id: str, rows: list[dict[str, Any]], event_name: str) -> None:
        """Bulk form of record_step: each row has ``step_id`` and the fields to set."""
        self.record_many(
            [(run_id, r["step_id"], event_name, {k: v for k, v in r.items() if k != "step_id"}) for r in rows]
        )

    def record_many(self, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Many ``(run_id, step_id, event, fields)`` step records in one transaction.

        SQLAlchemy Core ``executemany``: one UPDATE per set of fields with a list of
        parameter sets, one multi-row INSERT of the events (the ORM cost 14x more per row).
        """
        if not items:
            return
        at = now()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for run_id, step_id, _event, fields in items:
            params = {"b_run": run_id, "b_step": step_id, **{f"v_{k}": v for k, v in fields.items()}}
            groups.setdefault(tuple(sorted(fields)), []).append(params)
        events = [
            {
                "run_id": run_id,
                "step_id": step_id,
                "event": event,
                "at": at,
                "data": {k: fields[k] for k in _EVENT_FIELDS if k in fields} or None,
            }
            for run_id, step_id, event, fields in items
        ]
        with self.engine.begin() as conn:
            for names, param_sets in groups.items():
                if names:
                    conn.execute(_update_steps(names), param_sets)
            conn.execute(_EVENTS.insert(), events)

    def add_chunk_steps(self, run_id: str, step_id: str, count: int, queue: str | None) -> None:
        """Journal rows for a map step's chunks (``<step>#<i>``); repeated calls add nothing."""
        with self.session() as s, s.begin():
            have = set(
                s.scalars(
                    select(StepRow.step_id).where(
                        StepRow.run_id == run_id, StepRow.step_id.like(f"{step_id}#%")
                    )
                )
            )
            rows = [
                {
                    "run_id": run_id,
                    "step_id": f"{step_id}#{i}",
                    "task": "canvasflow.chunk",
                    "kind": "chunk",
                    "status": "pending",
                    "attempts": 0,
                    "queue": queue,
                }
                for i in range(count)
                if f"{step_id}#{i}" not in have
            ]
            if rows:
                s.execute(insert(StepRow), rows)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(EventRow).where(EventRow.run_id == run_id).order_by(EventRow.id))
            return [
                {"step_id": r.step_id, "event": r.event, "at": r.at.isoformat(), "data": r.data} for r in rows
            ]

    # -- definitions and signals ------------------------------------------------------
    def record_definition(self, name: str, version: str, input_schema: Any) -> None:
        with self.session() as s, s.begin():
            if s.get(DefinitionRow, (name, version)) is None:
                s.add(
                    DefinitionRow(name=name, version=version, input_schema=input_schema, registered_at=now())
                )

    def definitions(self, name: str | None = None) -> list[dict[str, Any]]:
        q = select(DefinitionRow).order_by(DefinitionRow.name, DefinitionRow.registered_at)
        if name:
            q = q.where(DefinitionRow.name == name)
        with self.session() as s:
            return [
                {
                    "name": d.name,
                    "version": d.version,
                    "input_schema": d.input_schema,
                    "registered_at": d.registered_at.isoformat(),
                }
                for d in s.scalars(q)
            ]

    def put_signal(self, run_id: str, name: str, payload: Any) -> bool:
        """Store a signal once; False when that signal was already received."""
        with self.session() as s, s.begin():
            if s.get(SignalRow, (run_id, name)) is not None:
                return False
            s.add(SignalRow(run_id=run_id, name=name, payload=payload, at=now()))
            s.add(EventRow(run_id=run_id, event="run.signal", at=now(), data={"name": name}))
            return True

    def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        with self.session() as s:
            row = s.get(SignalRow, (run_id, name))
            return (False, None) if row is None else (True, row.payload)


_stores: dict[tuple[int, str], SqlRunStore] = {}


def store_for(url: str) -> SqlRunStore:
    """One store per process and URL (a forked worker child builds its own engine)."""
    key = (os.getpid(), url)
    if key not in _stores:
        from canvasflow.workflows.store.schema import ensure_schema

        store = SqlRunStore(url)
        ensure_schema(store.engine)
        _stores[key] = store
    return _stores[key]
