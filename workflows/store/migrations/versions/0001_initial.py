"""Runs, steps, events, definitions and signals.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    n = migrating()
    op.create_table(
        n.table("runs"),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("parent_run_id", sa.String(64), sa.ForeignKey(n.fk("runs.id")), nullable=True),
        sa.Column("parent_step", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        schema=n.schema,
    )
    for column in ("workflow", "status", "parent_run_id"):
        op.create_index(n.index(f"runs_{column}"), n.table("runs"), [column], schema=n.schema)
    op.create_table(
        n.table("steps"),
        sa.Column("run_id", sa.String(64), sa.ForeignKey(n.fk("runs.id")), primary_key=True),
        sa.Column("step_id", sa.String(500), primary_key=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(200), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("task_id", sa.String(200), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("compensation", sa.String(200), nullable=True),
        sa.Column("compensation_status", sa.String(32), nullable=True),
        sa.Column("compensation_error", sa.JSON(), nullable=True),
        schema=n.schema,
    )
    op.create_table(
        n.table("events"),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey(n.fk("runs.id")), nullable=False),
        sa.Column("step_id", sa.String(500), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        schema=n.schema,
    )
    op.create_index(n.index("events_run"), n.table("events"), ["run_id", "id"], schema=n.schema)
    op.create_table(
        n.table("definitions"),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(50), primary_key=True),
        sa.Column("input_schema", sa.JSON(), nullable=True),
        sa.Column("registered_at", TS, nullable=False),
        schema=n.schema,
    )
    op.create_table(
        n.table("signals"),
        sa.Column("run_id", sa.String(64), sa.ForeignKey(n.fk("runs.id")), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("at", TS, nullable=False),
        schema=n.schema,
    )


def downgrade() -> None:
    n = migrating()
    for table in ("signals", "definitions", "events", "steps", "runs"):
        op.drop_table(n.table(table), schema=n.schema)
