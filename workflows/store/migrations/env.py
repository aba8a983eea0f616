"""Alembic environment: the engine and the journal's names are handed in by workflows.store.schema
(no ini file); the revision is kept in canvasflow's own version table."""

from __future__ import annotations

from alembic import context

from canvasflow.workflows.store.models import journal_tables
from canvasflow.workflows.store.schema import autogenerate_options, prepare

engine = context.config.attributes["engine"]
names = context.config.attributes["names"]
with engine.begin() as connection:
    prepare(connection, names)
    context.configure(
        connection=connection,
        target_metadata=journal_tables(names.prefix, names.schema).metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        **autogenerate_options(names),
    )
    context.run_migrations()
