"""The run store's reads: runs, their steps, events, definitions and signals, as records.

:class:`~canvasflow.workflows.store.sql.SqlRunStore` has them (and writes: ``sql.py``).

On PostgreSQL a read runs in autocommit (:meth:`RunReads.reading`). Under READ COMMITTED
every statement of a transaction takes its own snapshot, so a read transaction gave nothing
over autocommit and cost two round trips, ``BEGIN`` and the pool's ``ROLLBACK`` on return;
and psycopg drops every statement it has prepared on the connection when it sees a
``ROLLBACK``: measured, the run's end then re-parsed the journal's batch and the run's status
update each time (a third of their server time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.engine import Connection, RowMapping

from canvasflow.workflows.store.models import JournalTables
from canvasflow.workflows.store.records import RunRecord
from canvasflow.workflows.store.rows import aware, run_record, utc


class RunReads:
    """Queries on the journal's tables ``t`` through ``engine``."""

    engine: Engine
    t: JournalTables

    def reading(self) -> Connection:
        """A connection for reads: in autocommit on PostgreSQL (module docstring)."""
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _steps(self, conn: Connection, run_id: str, graph: Mapping[str, Any]) -> list[RowMapping]:
        rows = list(conn.execute(select(self.t.steps).where(self.t.steps.c.run_id == run_id)).mappings())
        order = {sid["id"]: i for i, sid in enumerate(graph.get("steps", []))}
        rows.sort(key=lambda st: order.get(st["step_id"], len(order)))
        return rows

    def get_run(self, run_id: str, *, with_steps: bool = True) -> RunRecord | None:
        with self.reading() as conn:
            row = conn.execute(select(self.t.runs).where(self.t.runs.c.id == run_id)).mappings().first()
            if row is None:
                return None
            return run_record(row, self._steps(conn, run_id, row["graph"]) if with_steps else ())

    def step_statuses(self, run_id: str) -> dict[str, str] | None:
        """Each journaled step's status (one query, no run record, no graph parsed); None when
        the journal has no such run (a run has at least its row; its steps may be none)."""
        steps, runs = self.t.steps, self.t.runs
        with self.reading() as conn:
            rows = conn.execute(
                select(runs.c.id, steps.c.step_id, steps.c.status)
                .select_from(runs.outerjoin(steps, steps.c.run_id == runs.c.id))
                .where(runs.c.id == run_id)
            ).all()
        if not rows:
            return None
        return {step: status for _, step, status in rows if step is not None}

    def run_by_key(self, key: str) -> RunRecord | None:
        """The run started with business key ``key``, if any (without its steps)."""
        with self.reading() as conn:
            row = conn.execute(select(self.t.runs).where(self.t.runs.c.run_key == key)).mappings().first()
            return None if row is None else run_record(row)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        key: str | None = None,
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Newest first; every filter given must hold (each tag in ``tags`` included)."""
        runs, run_tags = self.t.runs, self.t.run_tags
        q = select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        if status:
            q = q.where(runs.c.status == status)
        if workflow:
            q = q.where(runs.c.workflow == workflow)
        if key is not None:
            q = q.where(runs.c.run_key == key)
        for tag in dict.fromkeys(tags):
            q = q.where(
                exists().where(run_tags.c.run_id == runs.c.id, run_tags.c.tag == tag),
            )
        if since is not None:
            q = q.where(runs.c.created_at >= utc(since))
        if until is not None:
            q = q.where(runs.c.created_at < utc(until))
        with self.reading() as conn:
            return [run_record(r) for r in conn.execute(q).mappings()]

    def children(self, run_id: str) -> list[RunRecord]:
        runs = self.t.runs
        with self.reading() as conn:
            rows = conn.execute(select(runs).where(runs.c.parent_run_id == run_id)).mappings()
            return [run_record(r) for r in rows]

    def runs_with_status(self, statuses: Iterable[str], limit: int = 10_000) -> dict[str, int]:
        """Run id -> generation of the runs in one of ``statuses`` (the sweep's and recovery's view)."""
        runs = self.t.runs
        q = select(runs.c.id, runs.c.generation).where(runs.c.status.in_(list(statuses))).limit(limit)
        with self.reading() as conn:
            return {run_id: gen for run_id, gen in conn.execute(q)}

    def last_event_at(self, run_id: str) -> datetime | None:
        ev = self.t.events
        with self.reading() as conn:
            at = conn.scalar(select(func.max(ev.c.at)).where(ev.c.run_id == run_id))
        return aware(at) if at else None

    def events(self, run_id: str) -> list[dict[str, Any]]:
        ev = self.t.events
        with self.reading() as conn:
            rows = conn.execute(select(ev).where(ev.c.run_id == run_id).order_by(ev.c.id)).mappings()
            return [
                {
                    "step_id": r["step_id"],
                    "event": r["event"],
                    "at": aware(r["at"]).isoformat(),
                    "data": r["data"],
                }
                for r in rows
            ]

    def definitions(self, name: str | None = None) -> list[dict[str, Any]]:
        d = self.t.definitions
        q = select(d).order_by(d.c.name, d.c.registered_at)
        if name:
            q = q.where(d.c.name == name)
        with self.reading() as conn:
            return [
                {
                    "name": r["name"],
                    "version": r["version"],
                    "input_schema": r["input_schema"],
                    "registered_at": aware(r["registered_at"]).isoformat(),
                }
                for r in conn.execute(q).mappings()
            ]

    def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        sig = self.t.signals
        with self.reading() as conn:
            row = conn.execute(
                select(sig.c.payload).where(sig.c.run_id == run_id, sig.c.name == name)
            ).first()
            return (False, None) if row is None else (True, row[0])
