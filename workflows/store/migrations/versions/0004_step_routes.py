"""Every routing decision of each step, oldest first, with what became of it (engine, queue,
strategy, reason, time, outcome: ran, EngineError, engine died, timed out, taken over).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    n = migrating()
    op.add_column(n.table("steps"), sa.Column("routes", sa.JSON(), nullable=True), schema=n.schema)


def downgrade() -> None:
    n = migrating()
    with op.batch_alter_table(n.table("steps"), schema=n.schema) as batch:
        batch.drop_column("routes")
