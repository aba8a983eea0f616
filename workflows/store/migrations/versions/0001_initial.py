"""Runs, steps, events, definitions and signals.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cf_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("parent_run_id", sa.String(64), sa.ForeignKey("cf_runs.id"), nullable=True),
        sa.Column("parent_step", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_cf_runs_workflow", "cf_runs", ["workflow"])
    op.create_index("ix_cf_runs_status", "cf_runs", ["status"])
    op.create_index("ix_cf_runs_parent_run_id", "cf_runs", ["parent_run_id"])
    op.create_table(
        "cf_steps",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("cf_runs.id"), primary_key=True),
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
    )
    op.create_table(
        "cf_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("cf_runs.id"), nullable=False),
        sa.Column("step_id", sa.String(500), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
    )
    op.create_index("ix_cf_events_run", "cf_events", ["run_id", "id"])
    op.create_table(
        "cf_definitions",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(50), primary_key=True),
        sa.Column("input_schema", sa.JSON(), nullable=True),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_table(
        "cf_signals",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("cf_runs.id"), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("cf_signals", "cf_definitions", "cf_events", "cf_steps", "cf_runs"):
        op.drop_table(table)
