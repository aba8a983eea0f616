"""The SQLAlchemy run store: SQLite (WAL, several worker processes) by default, PostgreSQL in production.

Status changes are guarded in the database: ``UPDATE ... WHERE status IN (:expected)`` and
a rowcount check, so two processes racing on one run cannot both win. A run's business key
is unique in the database, so two starts racing on one key create one run.

This module holds the writes and :func:`store_for`; the reads are in ``reads.py``, the engine
in ``engine.py``, a row's conversion to a record in ``rows.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, literal, select
from sqlalchemy.exc import IntegrityError

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import get_settings
from canvasflow.workers.routing.decisions import journaled
from canvasflow.workflows.store.creation import RunCreation
from canvasflow.workflows.store.engine import make_engine
from canvasflow.workflows.store.models import DEFAULT_PREFIX, JournalTables, journal_tables
from canvasflow.workflows.store.pg_batch import batch_params, batch_sql
from canvasflow.workflows.store.reads import RunReads
from canvasflow.workflows.store.records import TERMINAL
from canvasflow.workflows.store.revision import ensure_schema
from canvasflow.workflows.store.rows import EVENT_AT, EVENT_DATA, event_data, now, utc
from canvasflow.workflows.store.sleeps import SleepJournal

__all__ = ["EVENT_AT", "SqlRunStore", "make_engine", "store_for"]


class SqlRunStore(RunCreation, RunReads, SleepJournal):
    """Runs, steps and their journal in one SQL database, in tables named ``<prefix>...``."""

    def __init__(self, url: str, *, table_prefix: str = DEFAULT_PREFIX, schema: str | None = None) -> None:
        if schema and url.startswith("sqlite"):
            raise SettingsError(
                f"CANVASFLOW_DATABASE_SCHEMA={schema!r} needs PostgreSQL; with SQLite use "
                "CANVASFLOW_TABLE_PREFIX to keep the journal's tables apart"
            )
        self.url = url
        self.engine = make_engine(url)
        self.t: JournalTables = journal_tables(table_prefix, schema or None)

    # -- runs (created by RunCreation, creation.py) -----------------------------------
    def transition_run(self, run_id: str, expected: Iterable[str], new: str, **fields: Any) -> bool:
        """Move the run to ``new`` only from one of ``expected``; True when this call did it.

        A terminal status is stamped ``finished_at`` (given: when the run ended, written later;
        else now), and its event carries that time."""
        at = now()
        if new in TERMINAL:
            at = fields["finished_at"] = fields.get("finished_at") or at
        runs = self.t.runs
        if self.engine.dialect.name == "postgresql":
            return self._transition_pg(run_id, expected, new, at, fields)
        with self.engine.begin() as conn:
            res = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status.in_(list(expected)))
                .values(status=new, **fields)
            )
            won = res.rowcount == 1
            if won:
                conn.execute(
                    self.t.events.insert().values(
                        run_id=run_id, event=f"run.{new}", at=at, data=fields.get("error")
                    )
                )
            return won

    def move_version(
        self,
        run_id: str,
        expected: Iterable[str],
        *,
        version: str,
        graph: dict[str, Any],
        steps: list[dict[str, Any]],
        skipped: Sequence[str],
        data: Any = None,
    ) -> bool:
        """Journal the run under ``version`` with ``graph``: each row of ``steps`` (``step_id``,
        ``task``, ``kind``, ``queue``, ``compensation``) updated or added, the ``skipped`` ones
        marked so; only from a status in ``expected``. True when this call did it."""
        t, at = self.t, now()
        with self.engine.begin() as conn:
            res = conn.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id, t.runs.c.status.in_(list(expected)))
                .values(version=version, graph=graph)
            )
            if res.rowcount != 1:
                return False
            have = set(conn.scalars(select(t.steps.c.step_id).where(t.steps.c.run_id == run_id)))
            new = [
                {"run_id": run_id, "status": "pending", "attempts": 0, **r}
                for r in steps
                if r["step_id"] not in have
            ]
            if new:
                conn.execute(t.steps.insert(), new)
            for r in steps:
                if r["step_id"] in have:
                    fields = {k: v for k, v in r.items() if k != "step_id"}
                    conn.execute(
                        t.steps.update()
                        .where(t.steps.c.run_id == run_id, t.steps.c.step_id == r["step_id"])
                        .values(**fields)
                    )
            for sid in skipped:
                conn.execute(
                    t.steps.update()
                    .where(t.steps.c.run_id == run_id, t.steps.c.step_id == sid)
                    .values(status="skipped")
                )
            conn.execute(t.events.insert().values(run_id=run_id, event="run.migrated", at=at, data=data))
        return True

    def _transition_pg(
        self, run_id: str, expected: Iterable[str], new: str, at: datetime, fields: dict[str, Any]
    ) -> bool:
        """PostgreSQL: the guarded UPDATE and its event in one statement, in autocommit (the event
        is inserted from the UPDATE's ``RETURNING``, so only by the call that moved the run): one
        round trip where ``BEGIN``, UPDATE, INSERT, ``COMMIT`` took four, at the end of every run."""
        runs, events = self.t.runs, self.t.events
        moved = (
            runs.update()
            .where(runs.c.id == run_id, runs.c.status.in_(list(expected)))
            .values(status=new, **fields)
            .returning(runs.c.id)
            .cte("cf_moved")
        )
        row = select(
            moved.c.id,
            literal(f"run.{new}", events.c.event.type),
            literal(at, events.c.at.type),
            literal(fields.get("error"), events.c.data.type),
        )
        stmt = events.insert().from_select(["run_id", "event", "at", "data"], row).add_cte(moved)
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(stmt.returning(events.c.run_id)).first() is not None

    # -- steps -------------------------------------------------------------------
    def record_step(self, run_id: str, step_id: str, event_name: str, **fields: Any) -> None:
        """Write a step's new state and journal the event, in one transaction."""
        self.record_many([(run_id, step_id, event_name, fields)])

    def record_steps(self, run_id: str, rows: list[dict[str, Any]], event_name: str) -> None:
        """Bulk form of record_step: each row has ``step_id`` and the fields to set."""
        self.record_many(
            [(run_id, r["step_id"], event_name, {k: v for k, v in r.items() if k != "step_id"}) for r in rows]
        )

    def _update_steps(self, names: tuple[str, ...]) -> Any:
        """UPDATE of the named step columns, keyed by bound run and step ids (for executemany)."""
        steps = self.t.steps
        return (
            steps.update()
            .where(steps.c.run_id == bindparam("b_run"), steps.c.step_id == bindparam("b_step"))
            .values({name: bindparam(f"v_{name}", type_=steps.c[name].type) for name in names})
        )

    def record_many(self, items: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Many ``(run_id, step_id, event, fields)`` step records in one transaction.

        A record's event is journaled at ``fields["at"]`` (when it happened, stamped by a
        batching writer) when given, else now; ``at`` is not a step column.

        PostgreSQL: one statement (pg_batch.py). Else SQLAlchemy Core ``executemany``: one
        UPDATE per set of fields with a list of parameter sets, one multi-row INSERT of the
        events (the ORM cost 14x more per row).
        """
        if not items:
            return
        written = now()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        events = []
        for run_id, step_id, name, raw in items:
            fields = {k: v for k, v in raw.items() if k not in (EVENT_AT, EVENT_DATA)}
            route = fields.get("route")
            if isinstance(route, dict) and "routes" not in fields:  # the decisions, with their outcome
                fields["routes"] = journaled(route, fields.get("status"), fields.get("error"))
            params = {"b_run": run_id, "b_step": step_id, **{f"v_{k}": v for k, v in fields.items()}}
            groups.setdefault(tuple(sorted(fields)), []).append(params)
            at = raw.get(EVENT_AT)
            events.append(
                {
                    "run_id": run_id,
                    "step_id": step_id,
                    "event": name,
                    "at": utc(at) if isinstance(at, datetime) else written,
                    "data": event_data(fields, raw.get(EVENT_DATA)),
                }
            )
        # PostgreSQL: step records need not wait for their WAL flush: nothing depends on them
        # (the writer's queue is lost with its process anyway; every terminal transition first
        # syncs each step from Redis) and the next synchronous commit (the run's status) flushes
        # every earlier one, so no step record is lost behind a durable run status
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                stmt = batch_sql(conn, self.t.steps, self.t.events, groups)
                if stmt is not None:  # one statement, one round trip (pg_batch.py)
                    conn.execute(stmt, batch_params(groups, events))
                    return
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            for names, param_sets in groups.items():
                if names:
                    conn.execute(self._update_steps(names), param_sets)
            conn.execute(self.t.events.insert(), events)

    def add_chunk_steps(self, run_id: str, step_id: str, count: int, queue: str | None) -> None:
        """Journal rows for a map step's chunks (``<step>#<i>``); repeated calls add nothing."""
        steps = self.t.steps
        with self.engine.begin() as conn:
            have = set(
                conn.scalars(
                    select(steps.c.step_id).where(
                        steps.c.run_id == run_id, steps.c.step_id.like(f"{step_id}#%")
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
                conn.execute(steps.insert(), rows)

    def delete_run(self, run_id: str) -> None:
        """Remove a run and everything journaled of it (a start that could not finish)."""
        t = self.t
        with self.engine.begin() as conn:
            for table in (t.events, t.steps, t.signals, t.run_tags):
                conn.execute(table.delete().where(table.c.run_id == run_id))
            conn.execute(t.runs.delete().where(t.runs.c.id == run_id))

    # -- definitions and signals ------------------------------------------------------
    def record_definition(self, name: str, version: str, input_schema: Any) -> None:
        """Journal a (workflow, version) once; a racing process that records it first is fine."""
        d = self.t.definitions
        try:
            with self.engine.begin() as conn:
                found = conn.execute(select(d.c.name).where(d.c.name == name, d.c.version == version)).first()
                if found is None:
                    conn.execute(
                        d.insert().values(
                            name=name, version=version, input_schema=input_schema, registered_at=now()
                        )
                    )
        except IntegrityError:
            pass

    def record_event(self, run_id: str, step_id: str | None, event: str, data: Any = None) -> None:
        """Journal an event alone (no row changes), e.g. ``run.resumed``."""
        with self.engine.begin() as conn:
            conn.execute(
                self.t.events.insert().values(
                    run_id=run_id, step_id=step_id, event=event, at=now(), data=data
                )
            )

    def put_signal(self, run_id: str, name: str, payload: Any) -> bool:
        """Store a signal once; False when that signal was already received."""
        sig = self.t.signals
        with self.engine.begin() as conn:
            found = conn.execute(select(sig.c.name).where(sig.c.run_id == run_id, sig.c.name == name)).first()
            if found is not None:
                return False
            conn.execute(sig.insert().values(run_id=run_id, name=name, payload=payload, at=now()))
            conn.execute(
                self.t.events.insert().values(
                    run_id=run_id, event="run.signal", at=now(), data={"name": name}
                )
            )
            return True


_stores: dict[tuple[int, str, str, str | None], SqlRunStore] = {}


def store_for(url: str, *, table_prefix: str | None = None, schema: str | None = None) -> SqlRunStore:
    """One store per process, URL, prefix and schema (a forked worker child builds its own engine);
    the prefix and schema default to the settings. The schema is brought to head on first use."""
    if table_prefix is None or schema is None:
        settings = get_settings()
        table_prefix = settings.table_prefix if table_prefix is None else table_prefix
        schema = settings.database_schema if schema is None else schema
    schema = schema or None
    key = (os.getpid(), url, table_prefix, schema)
    if key not in _stores:
        store = SqlRunStore(url, table_prefix=table_prefix, schema=schema)
        ensure_schema(store.engine, table_prefix=table_prefix, schema=schema)
        _stores[key] = store
    return _stores[key]
