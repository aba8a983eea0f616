"""The run store: SQLAlchemy models, Alembic migrations, typed records.

A face: the names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.workflows.store.records import RESUMABLE, TERMINAL, RunRecord, StepRecord
    from canvasflow.workflows.store.sql import SqlRunStore, store_for

_EXPORTS = {
    "RESUMABLE": "canvasflow.workflows.store.records",
    "RunRecord": "canvasflow.workflows.store.records",
    "SqlRunStore": "canvasflow.workflows.store.sql",
    "StepRecord": "canvasflow.workflows.store.records",
    "TERMINAL": "canvasflow.workflows.store.records",
    "store_for": "canvasflow.workflows.store.sql",
}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = ["RESUMABLE", "TERMINAL", "RunRecord", "SqlRunStore", "StepRecord", "store_for"]
