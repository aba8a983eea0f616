"""The run store: SQLAlchemy models, Alembic migrations, typed records."""

from canvasflow.workflows.store.records import RESUMABLE, TERMINAL, RunRecord, StepRecord
from canvasflow.workflows.store.sql import SqlRunStore, store_for

__all__ = ["RESUMABLE", "TERMINAL", "RunRecord", "SqlRunStore", "StepRecord", "store_for"]
