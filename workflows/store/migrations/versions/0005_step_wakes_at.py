"""A sleep step's due time (durable timers), so a timer outlives the state Redis.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    n = migrating()
    op.add_column(
        n.table("steps"), sa.Column("wakes_at", sa.DateTime(timezone=True), nullable=True), schema=n.schema
    )


def downgrade() -> None:
    n = migrating()
    with op.batch_alter_table(n.table("steps"), schema=n.schema) as batch:
        batch.drop_column("wakes_at")
