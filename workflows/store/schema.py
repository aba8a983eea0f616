"""Bring a database to the newest journal schema with Alembic (run on first use; safe to repeat).

canvasflow keeps its revision in a version table of its own, ``<prefix>alembic_version`` (in
the journal's schema, if one is set), so it shares a database with an application whose own
Alembic history lives in ``alembic_version``. A journal created before the version table was
renamed (its revision in ``alembic_version``) is adopted: the revision moves to canvasflow's
table, and the old row goes (the old table too, when that leaves it empty).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, Table, inspect, select, text

from canvasflow.config.errors import JournalTooNew
from canvasflow.workflows.store.models import JournalNames, names_for

MIGRATIONS = Path(__file__).with_name("migrations")
LEGACY_VERSION_TABLE = "alembic_version"
MIGRATION_LOCK = 0x63665F6A6F75  # PostgreSQL advisory lock key held while migrating ("cf_jou")


def alembic_config(engine: Engine, names: JournalNames) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    cfg.attributes["names"] = names
    return cfg


def context_options(names: JournalNames) -> dict[str, Any]:
    """MigrationContext options naming canvasflow's own version table."""
    return {"version_table": names.version_table, "version_table_schema": names.schema}


def script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


_UPGRADING = threading.Lock()


def known_revisions() -> set[str]:
    """Every revision of canvasflow's own migrations."""
    return {rev.revision for rev in script().walk_revisions()}


def head_revision() -> str | None:
    return script().get_current_head()


def current_revision(engine: Engine, names: JournalNames | None = None) -> str | None:
    names = names or names_for()
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts=context_options(names)).get_current_revision()


def upgrade(engine: Engine, names: JournalNames | None = None, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` (``canvasflow db upgrade``); JournalTooNew when a
    newer canvasflow migrated the journal past every revision this one knows."""
    names = names or names_for()
    current = current_revision(engine, names)
    if current is not None and current not in known_revisions():
        where = f"{engine.url.render_as_string(hide_password=True)} ({names.version_table})"
        raise JournalTooNew(
            f"the journal at {where} is at schema revision {current}, newer than this canvasflow's "
            f"{head_revision()}: a newer canvasflow migrated it. Upgrade canvasflow here too, or point "
            "CANVASFLOW_DATABASE_URL at a journal of this release"
        )
    command.upgrade(alembic_config(engine, names), revision)


def ensure_schema(engine: Engine, *, table_prefix: str | None = None, schema: str | None = None) -> None:
    """Upgrade to head unless already there; a concurrent upgrader that wins first is fine."""
    names = names_for(table_prefix, schema)
    if current_revision(engine, names) == head_revision():
        return
    # Alembic's `context` is one module-level proxy per process: threads of one process migrate one
    # at a time (processes are serialised by the database's advisory lock, see prepare())
    with _UPGRADING:
        if current_revision(engine, names) == head_revision():
            return
        try:
            upgrade(engine, names)
        except Exception:
            if current_revision(engine, names) != head_revision():
                raise


def prepare(conn: Connection, names: JournalNames) -> None:
    """Before migrating (called by env.py, in the migration's transaction): create the schema,
    and adopt a journal whose revision is still in the shared ``alembic_version`` table."""
    if conn.dialect.name == "postgresql":
        # one upgrader at a time (workers starting together); the lock ends with the transaction
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if names.schema:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{names.schema}"'))
    tables = set(inspect(conn).get_table_names(schema=names.schema))
    if names.version_table in tables or names.table("runs") not in tables:
        return
    ours = known_revisions()
    revision = None
    if LEGACY_VERSION_TABLE in tables and names.prefix == "cf_":  # the only prefix there was
        legacy = Table(LEGACY_VERSION_TABLE, MetaData(), autoload_with=conn, schema=names.schema)
        found = [r for r in conn.scalars(select(legacy.c.version_num)) if r in ours]
        if found:
            revision = found[0]
            conn.execute(legacy.delete().where(legacy.c.version_num == revision))
            if conn.execute(select(legacy.c.version_num)).first() is None:
                legacy.drop(conn)
    if revision is None:  # tables without any record of their revision: tell by their columns
        columns = {c["name"] for c in inspect(conn).get_columns(names.table("runs"), schema=names.schema)}
        revision = "0002" if "run_key" in columns else "0001"
        steps = {c["name"] for c in inspect(conn).get_columns(names.table("steps"), schema=names.schema)}
        revision = "0003" if "route" in steps else revision
        revision = "0004" if "routes" in steps else revision
        revision = "0005" if "wakes_at" in steps else revision
    MigrationContext.configure(conn, opts=context_options(names)).stamp(script(), revision)


def autogenerate_options(names: JournalNames) -> dict[str, Any]:
    """MigrationContext options for comparing the journal (and only it) with its models."""
    return {
        "include_schemas": names.schema is not None,
        "include_name": include_name(names),
        **context_options(names),
    }


def include_name(names: JournalNames):  # type: ignore[no-untyped-def]
    """An Alembic ``include_name`` hook: only the journal's own tables (an app's are not ours)."""

    def include(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
        if type_ == "schema":
            return name == names.schema
        if type_ == "table":
            return bool(name) and str(name).startswith(names.prefix) and name != names.version_table
        return True

    return include


def migrating() -> JournalNames:
    """The names of the journal being migrated (for the migration scripts)."""
    from alembic import context

    names = context.config.attributes.get("names")
    return names if isinstance(names, JournalNames) else names_for()
