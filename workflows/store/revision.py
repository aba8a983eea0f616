"""Is the journal at the newest schema? Read with one SELECT, so that opening the store loads
Alembic only when there is something to migrate (a process that only reads a run, such as
``canvasflow status``, never does).
"""

from __future__ import annotations

from sqlalchemy import Column, Engine, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError

from canvasflow.workflows.store.models import JournalNames, names_for

# the newest migration's revision: tests/unit/test_store_revision.py checks it against the scripts
HEAD = "0006"


def at_head(engine: Engine, names: JournalNames) -> bool:
    """The journal's version table holds the head revision, and only it (False when it cannot be read)."""
    version = Table(names.version_table, MetaData(), Column("version_num", String(32)), schema=names.schema)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(version.c.version_num))) == [HEAD]
    except DBAPIError:  # no version table yet, or no database: the migration path says which
        return False


def ensure_schema(engine: Engine, *, table_prefix: str | None = None, schema: str | None = None) -> None:
    """Upgrade to head unless already there; a concurrent upgrader that wins first is fine."""
    if at_head(engine, names_for(table_prefix, schema)):
        return
    # Alembic, loaded on demand: only a journal behind head (once per database) needs it
    from canvasflow.workflows.store import schema as migrations

    migrations.ensure_schema(engine, table_prefix=table_prefix, schema=schema)
