"""A run's business key (unique: one run per key) and tags, with a table to find runs by tag.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from canvasflow.workflows.store.schema import migrating

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    n = migrating()
    runs = n.table("runs")
    op.add_column(runs, sa.Column("run_key", sa.String(200), nullable=True), schema=n.schema)
    op.add_column(runs, sa.Column("tags", sa.JSON(), nullable=True), schema=n.schema)
    op.create_index(n.index("runs_run_key"), runs, ["run_key"], unique=True, schema=n.schema)
    op.create_index(n.index("runs_created_at"), runs, ["created_at"], schema=n.schema)
    op.create_table(
        n.table("run_tags"),
        sa.Column("run_id", sa.String(64), sa.ForeignKey(n.fk("runs.id")), primary_key=True),
        sa.Column("tag", sa.String(200), primary_key=True),
        schema=n.schema,
    )
    op.create_index(n.index("run_tags_tag"), n.table("run_tags"), ["tag"], schema=n.schema)


def downgrade() -> None:
    n = migrating()
    runs = n.table("runs")
    op.drop_table(n.table("run_tags"), schema=n.schema)
    op.drop_index(n.index("runs_created_at"), runs, schema=n.schema)
    op.drop_index(n.index("runs_run_key"), runs, schema=n.schema)
    with op.batch_alter_table(runs, schema=n.schema) as batch:
        batch.drop_column("tags")
        batch.drop_column("run_key")
