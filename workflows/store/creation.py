"""Journaling new runs: one run (``create_run``) or a batch of them (``create_runs``).

A run is journaled with one row per step, its tags and its ``run.created`` event, all or
nothing. The costs are round trips, so both forms keep them few:

* one run on PostgreSQL is **one statement** (the run, steps, tags and event inserted by
  data-modifying CTEs) in autocommit: a statement is its own transaction, so it needs no
  ``BEGIN``/``COMMIT`` round trips; on SQLite (in-process, no round trips) one transaction;
* a batch is one transaction of multi-row ``INSERT``s, whatever its size.

A run's business key is unique in the database: a key already held returns the holder's id
(nothing is inserted for that run); two starts racing on one key create one run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Table, select, text
from sqlalchemy.exc import IntegrityError

from canvasflow.workflows.store.driver_rows import DriverInsert, positional
from canvasflow.workflows.store.models import JournalTables
from canvasflow.workflows.store.rows import now


@dataclass
class NewRun:
    """What :meth:`RunCreation.create_runs` journals of one run."""

    run_id: str
    workflow: str
    version: str
    inputs: Any
    graph: dict[str, Any]
    steps: list[dict[str, Any]]
    status: str = "running"
    parent_run_id: str | None = None
    parent_step: str | None = None
    key: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)


class RunCreation:
    """Inserts of new runs into the journal's tables ``t`` through ``engine``."""

    engine: Engine
    t: JournalTables

    def create_run(self, *, run_id: str, **fields: Any) -> str:
        """Journal a new run; return its id, or with ``key`` the id of the run that already holds it."""
        run = NewRun(run_id=run_id, **fields)
        if self.engine.dialect.name != "postgresql":
            return self.create_runs([run])[0]
        try:
            self._insert_pg([run])
        except IntegrityError:
            holder = self.runs_by_keys([run.key]).get(run.key) if run.key is not None else None
            if holder is None:
                raise
            return holder
        return run_id

    def create_runs(self, runs: Sequence[NewRun]) -> list[str]:
        """Journal ``runs`` in one transaction; return each one's id, in order (with a key, the
        id of the run that holds it: a key held already, or by an earlier run of the batch)."""
        if not runs:
            return []
        keys = [r.key for r in runs if r.key is not None]
        held = self.runs_by_keys(keys) if keys else {}
        ids: list[str] = []
        fresh: list[NewRun] = []
        for run in runs:
            if run.key is not None and run.key in held:
                ids.append(held[run.key])
                continue
            if run.key is not None:
                held[run.key] = run.run_id
            fresh.append(run)
            ids.append(run.run_id)
        if not fresh:
            return ids
        try:
            if self.engine.dialect.name == "postgresql":
                self._insert_pg(fresh)
            else:
                self._insert(fresh)
        except IntegrityError:
            if not keys:
                raise
            # a racing start took one of the keys: journal the batch run by run
            mine = {id(run) for run in fresh}
            return [self.create_runs([r])[0] if id(r) in mine else i for r, i in zip(runs, ids, strict=True)]
        return ids

    def runs_by_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """The ids of the runs holding any of ``keys``, by key."""
        runs = self.t.runs
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.run_key, runs.c.id).where(runs.c.run_key.in_(list(keys))))
            return {k: i for k, i in rows}

    def workflows_by_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """The workflow of the run holding each of ``keys`` that is held, by key."""
        runs = self.t.runs
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.run_key, runs.c.workflow).where(runs.c.run_key.in_(list(keys))))
            return {k: w for k, w in rows}

    # -- parts ---------------------------------------------------------------------------
    def _insert_pg(self, runs: Sequence[NewRun]) -> None:
        """PostgreSQL: every row of ``runs`` in **one statement**, in autocommit (a statement is
        its own transaction: no ``BEGIN``/``COMMIT`` round trips). Each table's rows travel as
        one JSON array (``json_to_recordset``), so the statement's text is the same for any
        number of runs and steps and SQLAlchemy compiles it once (a multi-row ``VALUES`` has no
        cache key: it compiled on every call, 1.5 ms of a 5 ms start; ``executemany`` of the
        steps is a statement per row)."""
        at = now().isoformat()
        rows: dict[str, list[dict[str, Any]]] = {"runs": [], "steps": [], "tags": [], "events": []}
        for run in runs:
            r, steps, tags, event = self._rows(run, at)
            rows["runs"].append(r)
            rows["steps"].extend(steps)
            rows["tags"].extend(tags)
            rows["events"].append(event)
        params = {name: json.dumps(found) for name, found in rows.items()}
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(self._pg_statement(), params)

    def _pg_statement(self) -> Any:
        stmt = self.__dict__.get("_pg_create")
        if stmt is None:
            t, q = self.t, self.engine.dialect.identifier_preparer
            parts = [
                f"{name} AS (INSERT INTO {q.format_table(table)} ({', '.join(c for c, _ in cols)}) "
                f"SELECT {', '.join(c for c, _ in cols)} FROM json_to_recordset(CAST(:{param} AS json)) "
                f"AS x({', '.join(f'{c} {kind}' for c, kind in cols)}))"
                for name, table, param, cols in (
                    ("cf_runs", t.runs, "runs", _RUN_COLUMNS),
                    ("cf_steps", t.steps, "steps", _STEP_COLUMNS),
                    ("cf_tags", t.run_tags, "tags", (("run_id", "text"), ("tag", "text"))),
                )
            ]
            cols = ", ".join(c for c, _ in _EVENT_COLUMNS)
            stmt = text(
                f"WITH {', '.join(parts)} INSERT INTO {q.format_table(t.events)} ({cols}) SELECT {cols} "
                f"FROM json_to_recordset(CAST(:events AS json)) "
                f"AS x({', '.join(f'{c} {kind}' for c, kind in _EVENT_COLUMNS)})"
            )
            self.__dict__["_pg_create"] = stmt
        return stmt

    def _insert(self, runs: Sequence[NewRun]) -> None:
        """Other databases (SQLite): one transaction of multi-row ``INSERT``s, sent with the
        driver's statements where its parameters are positional (driver_rows.py)."""
        t, at = self.t, now()
        run_rows, step_rows, tag_rows, events = [], [], [], []
        for run in runs:
            r, s, tags, e = self._rows(run, at)
            run_rows.append(r)
            step_rows.extend(s)
            tag_rows.extend(tags)
            events.append(e)
        tables = ((t.runs, run_rows), (t.steps, step_rows), (t.run_tags, tag_rows), (t.events, events))
        with self.engine.begin() as conn:
            for table, rows in tables:
                if not rows:
                    continue
                driver = self._driver_insert(table, rows)
                if driver is None:
                    conn.execute(table.insert(), rows)
                else:
                    driver.run(conn, rows)

    def _driver_insert(self, table: Table, rows: list[dict[str, Any]]) -> DriverInsert | None:
        """The driver's ``INSERT`` of ``rows`` into ``table``, when they all give the same columns
        (None: use a Core insert)."""
        dialect, columns = self.engine.dialect, rows[0].keys()
        if not positional(dialect) or any(r.keys() != columns for r in rows):
            return None
        cache: dict[tuple[str, tuple[str, ...]], DriverInsert]
        cache = self.__dict__.setdefault("_driver_inserts", {})
        key = (table.name, tuple(columns))
        found = cache.get(key)
        if found is None:
            found = cache[key] = DriverInsert(table, dialect, key[1])
        return found

    @staticmethod
    def _rows(run: NewRun, at: Any) -> tuple[dict[str, Any], list[dict], list[dict], dict[str, Any]]:
        tags = list(dict.fromkeys(run.tags))
        run_row = {
            "id": run.run_id,
            "workflow": run.workflow,
            "version": run.version,
            "status": run.status,
            "generation": 1,
            "inputs": run.inputs,
            "graph": run.graph,
            "result": None,
            "error": None,
            "parent_run_id": run.parent_run_id,
            "parent_step": run.parent_step,
            "created_at": at,
            "finished_at": None,
            "run_key": run.key,
            "tags": tags or None,
        }
        steps = [_step_row(run.run_id, st) for st in run.steps]
        data: dict[str, Any] = {"workflow": run.workflow}
        if run.key is not None:
            data["key"] = run.key
        event = {"run_id": run.run_id, "step_id": None, "event": "run.created", "at": at, "data": data}
        return run_row, steps, [{"run_id": run.run_id, "tag": tag} for tag in tags], event


_RUN_COLUMNS = (
    ("id", "text"), ("workflow", "text"), ("version", "text"), ("status", "text"), ("generation", "integer"),
    ("inputs", "json"), ("graph", "json"), ("parent_run_id", "text"), ("parent_step", "text"),
    ("created_at", "timestamptz"), ("run_key", "text"), ("tags", "json"),
)  # fmt: skip
_EVENT_COLUMNS = (("run_id", "text"), ("event", "text"), ("at", "timestamptz"), ("data", "json"))
_STEP_COLUMNS = (
    ("run_id", "text"), ("step_id", "text"), ("task", "text"), ("kind", "text"), ("status", "text"),
    ("attempts", "integer"), ("queue", "text"), ("compensation", "text"),
)  # fmt: skip


def _step_row(run_id: str, st: dict[str, Any]) -> dict[str, Any]:
    """A journal row of a new step: every column given, so rows insert as one multi-row INSERT."""
    return {
        "run_id": run_id,
        "status": "pending",
        "attempts": 0,
        "kind": "task",
        "queue": None,
        "compensation": None,
        **st,
    }
