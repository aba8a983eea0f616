"""The steps' and events' foreign keys to their run are dropped: the journal's hot inserts.

Every step row a new run inserts, and every event the journal writer appends, made
PostgreSQL look its run up and lock it (``SELECT ... FOR KEY SHARE``): 45% of the server's
time journaling 1,000 new chains of 10 in one batch (262 -> 138 ms). canvasflow writes a
run's steps and its first event in the statement that inserts the run, later rows only for a
run it read, and deletes a run's rows together (store/retention.py); the tags' and signals'
keys, written rarely, stay.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: batch mode names them by this convention to drop them
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
_TABLES = ("steps", "events")


def upgrade() -> None:
    n = migrating()
    bind = op.get_bind()
    for table in map(n.table, _TABLES):
        for fk in sa.inspect(bind).get_foreign_keys(table, schema=n.schema):
            if fk["constrained_columns"] != ["run_id"]:
                continue
            name = fk["name"] or f"fk_{table}_run_id"  # SQLite's keys may have no name
            if bind.dialect.name != "sqlite":
                op.drop_constraint(name, table, type_="foreignkey", schema=n.schema)
                continue
            # SQLite alters a table by copying it (batch mode)
            with op.batch_alter_table(table, schema=n.schema, naming_convention=_SQLITE_NAMES) as batch:
                batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    n = migrating()
    runs = n.table("runs")
    for table in map(n.table, _TABLES):
        with op.batch_alter_table(table, schema=n.schema) as batch:
            batch.create_foreign_key(
                f"{table}_run_id_fkey", runs, ["run_id"], ["id"], referent_schema=n.schema
            )
