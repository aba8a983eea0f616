"""What the run operations read of a run: its journal record, and the labels its steps read.

The lowest module of :mod:`canvasflow.workflows.runs`: start, resume, the rollbacks, the
history and the client all find a run here, and refuse an unknown id the same way.
"""

from __future__ import annotations

from canvasflow.config.errors import RunNotFound
from canvasflow.workflows.runtime.connections import connections
from canvasflow.workflows.store.records import RunRecord


def get_record(run_id: str) -> RunRecord:
    """The run's journal record with its steps; RunNotFound for an unknown id."""
    record = connections().store.get_run(run_id)
    if record is None:
        raise RunNotFound(f"no run with id {run_id!r}: list runs with `canvasflow runs`")
    return record


def run_labels(
    workflow: str, version: str, parent_run_id: str | None, parent_step: str | None
) -> dict[str, str]:
    """What a step's ``context()`` reads of its run without a SQL query (kept in Redis)."""
    return {
        "workflow": workflow,
        "version": version,
        "parent_run": parent_run_id or "",
        "parent_step": parent_step or "",
    }
