"""The SQLAlchemy run store: SQLite (WAL, several worker processes) by default, PostgreSQL in production.

Status changes are guarded in the database: ``UPDATE ... WHERE status IN (:expected)`` and
a rowcount check, so two processes racing on one run cannot both win. A run's business key
is unique in the database, so two starts racing on one key create one run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, exists, func, select
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from canvasflow.config.errors import SettingsError
from canvasflow.workflows.store.models import DEFAULT_PREFIX, JournalTables, journal_tables
from canvasflow.workflows.store.records import TERMINAL, RunRecord, StepRecord


def now() -> datetime:
    return datetime.now(UTC)


EVENT_AT = "at"  # a step record's field holding when its event happened (not a step column)
EVENT_DATA = "event_data"  # a step record's field: more data for its event only (not a step column)
# the step columns an event keeps: each attempt stays readable after a resume resets the row
_EVENT_FIELDS = (
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
)
# the step columns (StepRecord's other fields are read from elsewhere: attempt_log, progress)
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord) if f.name not in StepRecord.DERIVED)


def _event_data(fields: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a step event keeps of its record: the fields worth history (times as ISO text)."""
    data = {k: fields[k] for k in _EVENT_FIELDS if fields.get(k) is not None}
    for k, v in data.items():
        if isinstance(v, datetime):
            data[k] = _utc(v).isoformat()
    if extra:
        data.update(extra)
    return data or None


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
    from canvasflow.config.settings import get_settings

    s = get_settings()  # the pool is per process: a prefork worker has one in each child
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=s.database_pool_size,
        max_overflow=s.database_max_overflow,
        pool_recycle=s.database_pool_recycle,
        pool_timeout=s.database_pool_timeout,
    )


def _step_record(row: RowMapping) -> StepRecord:
    return StepRecord(**{k: row[k] for k in _STEP_FIELDS})


def _run_record(row: RowMapping, steps: Iterable[RowMapping] = ()) -> RunRecord:
    return RunRecord(
        id=row["id"],
        workflow=row["workflow"],
        version=row["version"],
        status=row["status"],
        generation=row["generation"],
        inputs=row["inputs"],
        graph=row["graph"],
        created_at=_aware(row["created_at"]),
        result=row["result"],
        error=row["error"],
        parent_run_id=row["parent_run_id"],
        parent_step=row["parent_step"],
        finished_at=_aware(row["finished_at"]),
        key=row["run_key"],
        tags=list(row["tags"] or []),
        steps=[_step_record(s) for s in steps],
    )


def _utc(at: datetime) -> datetime:
    """In UTC, as every time is stored (SQLite keeps no offset); a naive time is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _aware(at: datetime | None) -> Any:
    """SQLite hands back naive datetimes for what was written in UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


class SqlRunStore:
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
        key: str | None = None,
        tags: Sequence[str] = (),
    ) -> str:
        """Journal a new run; return its id, or with ``key`` the id of the run that already holds it."""
        at = now()
        t = self.t
        tags = list(dict.fromkeys(tags))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.runs.insert().values(
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
                        run_key=key,
                        tags=tags or None,
                    )
                )
                if steps:
                    conn.execute(
                        t.steps.insert(),
                        [{"run_id": run_id, "status": "pending", "attempts": 0, **st} for st in steps],
                    )
                if tags:
                    conn.execute(t.run_tags.insert(), [{"run_id": run_id, "tag": tag} for tag in tags])
                data: dict[str, Any] = {"workflow": workflow}
                if key is not None:
                    data["key"] = key
                conn.execute(t.events.insert().values(run_id=run_id, event="run.created", at=at, data=data))
        except IntegrityError:
            holder = self.run_by_key(key) if key is not None else None
            if holder is None:
                raise
            return holder.id
        return run_id

    def _steps(self, conn: Connection, run_id: str, graph: Mapping[str, Any]) -> list[RowMapping]:
        rows = list(conn.execute(select(self.t.steps).where(self.t.steps.c.run_id == run_id)).mappings())
        order = {sid["id"]: i for i, sid in enumerate(graph.get("steps", []))}
        rows.sort(key=lambda st: order.get(st["step_id"], len(order)))
        return rows

    def get_run(self, run_id: str, *, with_steps: bool = True) -> RunRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self.t.runs).where(self.t.runs.c.id == run_id)).mappings().first()
            if row is None:
                return None
            return _run_record(row, self._steps(conn, run_id, row["graph"]) if with_steps else ())

    def run_by_key(self, key: str) -> RunRecord | None:
        """The run started with business key ``key``, if any (without its steps)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(self.t.runs).where(self.t.runs.c.run_key == key)).mappings().first()
            return None if row is None else _run_record(row)

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
            q = q.where(runs.c.created_at >= _utc(since))
        if until is not None:
            q = q.where(runs.c.created_at < _utc(until))
        with self.engine.connect() as conn:
            return [_run_record(r) for r in conn.execute(q).mappings()]

    def children(self, run_id: str) -> list[RunRecord]:
        runs = self.t.runs
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs).where(runs.c.parent_run_id == run_id)).mappings()
            return [_run_record(r) for r in rows]

    def transition_run(self, run_id: str, expected: Iterable[str], new: str, **fields: Any) -> bool:
        """Move the run to ``new`` only from one of ``expected``; True when this call did it."""
        at = now()
        if new in TERMINAL:
            fields.setdefault("finished_at", at)
        runs = self.t.runs
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

        SQLAlchemy Core ``executemany``: one UPDATE per set of fields with a list of
        parameter sets, one multi-row INSERT of the events (the ORM cost 14x more per row).
        """
        if not items:
            return
        written = now()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        events = []
        for run_id, step_id, name, raw in items:
            fields = {k: v for k, v in raw.items() if k not in (EVENT_AT, EVENT_DATA)}
            params = {"b_run": run_id, "b_step": step_id, **{f"v_{k}": v for k, v in fields.items()}}
            groups.setdefault(tuple(sorted(fields)), []).append(params)
            at = raw.get(EVENT_AT)
            events.append(
                {
                    "run_id": run_id,
                    "step_id": step_id,
                    "event": name,
                    "at": _utc(at) if isinstance(at, datetime) else written,
                    "data": _event_data(fields, raw.get(EVENT_DATA)),
                }
            )
        with self.engine.begin() as conn:
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

    def runs_with_status(self, statuses: Iterable[str], limit: int = 10_000) -> dict[str, int]:
        """Run id -> generation of the runs in one of ``statuses`` (the sweep's and recovery's view)."""
        runs = self.t.runs
        q = select(runs.c.id, runs.c.generation).where(runs.c.status.in_(list(statuses))).limit(limit)
        with self.engine.connect() as conn:
            return {run_id: gen for run_id, gen in conn.execute(q)}

    def last_event_at(self, run_id: str) -> datetime | None:
        ev = self.t.events
        with self.engine.connect() as conn:
            at = conn.scalar(select(func.max(ev.c.at)).where(ev.c.run_id == run_id))
        return _aware(at) if at else None

    def delete_run(self, run_id: str) -> None:
        """Remove a run and everything journaled of it (a start that could not finish)."""
        t = self.t
        with self.engine.begin() as conn:
            for table in (t.events, t.steps, t.signals, t.run_tags):
                conn.execute(table.delete().where(table.c.run_id == run_id))
            conn.execute(t.runs.delete().where(t.runs.c.id == run_id))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        ev = self.t.events
        with self.engine.connect() as conn:
            rows = conn.execute(select(ev).where(ev.c.run_id == run_id).order_by(ev.c.id)).mappings()
            return [
                {
                    "step_id": r["step_id"],
                    "event": r["event"],
                    "at": _aware(r["at"]).isoformat(),
                    "data": r["data"],
                }
                for r in rows
            ]

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

    def definitions(self, name: str | None = None) -> list[dict[str, Any]]:
        d = self.t.definitions
        q = select(d).order_by(d.c.name, d.c.registered_at)
        if name:
            q = q.where(d.c.name == name)
        with self.engine.connect() as conn:
            return [
                {
                    "name": r["name"],
                    "version": r["version"],
                    "input_schema": r["input_schema"],
                    "registered_at": _aware(r["registered_at"]).isoformat(),
                }
                for r in conn.execute(q).mappings()
            ]

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

    def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]:
        sig = self.t.signals
        with self.engine.connect() as conn:
            row = conn.execute(
                select(sig.c.payload).where(sig.c.run_id == run_id, sig.c.name == name)
            ).first()
            return (False, None) if row is None else (True, row[0])


_stores: dict[tuple[int, str, str, str | None], SqlRunStore] = {}


def store_for(url: str, *, table_prefix: str | None = None, schema: str | None = None) -> SqlRunStore:
    """One store per process, URL, prefix and schema (a forked worker child builds its own engine);
    the prefix and schema default to the settings. The schema is brought to head on first use."""
    if table_prefix is None or schema is None:
        from canvasflow.config.settings import get_settings

        settings = get_settings()
        table_prefix = settings.table_prefix if table_prefix is None else table_prefix
        schema = settings.database_schema if schema is None else schema
    schema = schema or None
    key = (os.getpid(), url, table_prefix, schema)
    if key not in _stores:
        from canvasflow.workflows.store.schema import ensure_schema

        store = SqlRunStore(url, table_prefix=table_prefix, schema=schema)
        ensure_schema(store.engine, table_prefix=table_prefix, schema=schema)
        _stores[key] = store
    return _stores[key]
