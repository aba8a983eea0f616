"""The router's decision for each step (engine, queue, strategy, reason, engines tried).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    n = migrating()
    op.add_column(n.table("steps"), sa.Column("route", sa.JSON(), nullable=True), schema=n.schema)


def downgrade() -> None:
    n = migrating()
    with op.batch_alter_table(n.table("steps"), schema=n.schema) as batch:
        batch.drop_column("route")
