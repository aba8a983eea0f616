"""The journal's tables: runs, their steps and tags, an append-only event journal, definitions, signals.

Every table name starts with a prefix (``CANVASFLOW_TABLE_PREFIX``, default ``cf_``) and the
tables may live in a PostgreSQL schema of their own (``CANVASFLOW_DATABASE_SCHEMA``), so the
journal shares a database with an application's tables. :func:`journal_tables` builds the
SQLAlchemy Core tables for one (prefix, schema); the Alembic migrations use the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from canvasflow.config.settings import get_settings

DEFAULT_PREFIX = "cf_"
TS = DateTime(timezone=True)


@dataclass(frozen=True)
class JournalNames:
    """Table, index and version-table names for one prefix and schema."""

    prefix: str = DEFAULT_PREFIX
    schema: str | None = None

    def table(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def index(self, suffix: str) -> str:
        return f"ix_{self.prefix}{suffix}"

    def fk(self, suffix: str) -> str:
        """A foreign-key target ``[schema.]<prefix><suffix>`` (suffix like ``runs.id``)."""
        target = f"{self.prefix}{suffix}"
        return f"{self.schema}.{target}" if self.schema else target

    @property
    def version_table(self) -> str:
        """canvasflow's own Alembic version table, so an app's ``alembic_version`` is left alone."""
        return f"{self.prefix}alembic_version"


def names_for(table_prefix: str | None = None, schema: str | None = None) -> JournalNames:
    """The journal's names; the prefix and schema default to the settings."""
    if table_prefix is None or schema is None:
        settings = get_settings()
        table_prefix = settings.table_prefix if table_prefix is None else table_prefix
        schema = settings.database_schema if schema is None else schema
    return JournalNames(table_prefix, schema or None)


@dataclass(frozen=True)
class JournalTables:
    names: JournalNames
    metadata: MetaData
    runs: Table
    steps: Table
    events: Table
    definitions: Table
    signals: Table
    run_tags: Table


@cache
def journal_tables(prefix: str = DEFAULT_PREFIX, schema: str | None = None) -> JournalTables:
    """The Core tables of the journal for ``prefix`` and ``schema`` (cached: one set each)."""
    n = JournalNames(prefix, schema)
    md = MetaData(schema=schema)
    runs = Table(
        n.table("runs"),
        md,
        Column("id", String(64), primary_key=True),
        Column("workflow", String(200), nullable=False),
        Column("version", String(50), nullable=False),
        Column("status", String(32), nullable=False),
        Column("generation", Integer, nullable=False),
        Column("inputs", JSON, nullable=False),
        Column("graph", JSON, nullable=False),
        Column("result", JSON, nullable=True),
        Column("error", JSON, nullable=True),
        Column("parent_run_id", String(64), ForeignKey(n.fk("runs.id")), nullable=True),
        Column("parent_step", String(500), nullable=True),
        Column("created_at", TS, nullable=False),
        Column("finished_at", TS, nullable=True),
        # the caller's business key (start(..., key=...)): one run per key
        Column("run_key", String(200), nullable=True),
        Column("tags", JSON, nullable=True),
        Index(n.index("runs_workflow"), "workflow"),
        Index(n.index("runs_status"), "status"),
        Index(n.index("runs_parent_run_id"), "parent_run_id"),
        Index(n.index("runs_run_key"), "run_key", unique=True),
        Index(n.index("runs_created_at"), "created_at"),
    )
    steps = Table(
        n.table("steps"),
        md,
        # no foreign key to the run: migration 0006 says why (written with or after the run)
        Column("run_id", String(64), primary_key=True),
        Column("step_id", String(500), primary_key=True),
        Column("task", String(200), nullable=False),
        Column("kind", String(16), nullable=False, default="task"),
        Column("status", String(32), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("queue", String(200), nullable=True),
        Column("worker", String(200), nullable=True),
        Column("task_id", String(200), nullable=True),
        Column("started_at", TS, nullable=True),
        Column("finished_at", TS, nullable=True),
        Column("result", JSON, nullable=True),
        Column("error", JSON, nullable=True),
        Column("compensation", String(200), nullable=True),
        Column("compensation_status", String(32), nullable=True),
        Column("compensation_error", JSON, nullable=True),
        Column("route", JSON, nullable=True),
        Column("routes", JSON, nullable=True),
        Column("wakes_at", TS, nullable=True),  # a sleep step's due time (runtime/timers.py)
    )
    events = Table(
        n.table("events"),
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(64), nullable=False),  # no foreign key: migration 0006
        Column("step_id", String(500), nullable=True),
        Column("event", String(64), nullable=False),
        Column("at", TS, nullable=False),
        Column("data", JSON, nullable=True),
        Index(n.index("events_run"), "run_id", "id"),
    )
    definitions = Table(
        n.table("definitions"),
        md,
        Column("name", String(200), primary_key=True),
        Column("version", String(50), primary_key=True),
        Column("input_schema", JSON, nullable=True),
        Column("registered_at", TS, nullable=False),
    )
    signals = Table(
        n.table("signals"),
        md,
        Column("run_id", String(64), ForeignKey(n.fk("runs.id")), primary_key=True),
        Column("name", String(200), primary_key=True),
        Column("payload", JSON, nullable=True),
        Column("at", TS, nullable=False),
    )
    run_tags = Table(
        n.table("run_tags"),
        md,
        Column("run_id", String(64), ForeignKey(n.fk("runs.id")), primary_key=True),
        Column("tag", String(200), primary_key=True),
        Index(n.index("run_tags_tag"), "tag"),
    )
    return JournalTables(n, md, runs, steps, events, definitions, signals, run_tags)
