"""The rollback as a core listener of the runtime's control-flow events (``runtime/control.py``).

:data:`ROLLBACK` is the one listener of a process: the composition root (``canvasflow.app``)
registers it with ``core=True`` (its exceptions propagate), so every process that imports the
root, the client or ``init_app`` has it; importing this module registers nothing.
"""

from __future__ import annotations

from canvasflow.compensation import rollback
from canvasflow.workflows.runtime.control import RollbackEvent, RollbackHooks


class Rollback(RollbackHooks):
    """Start, move on and close the rollback of failed runs (``compensation/rollback.py``)."""

    def on_rollback_needed(self, event: RollbackEvent) -> None:
        rollback.begin(event.rt, event.run_id, event.generation)

    def on_rollback_progress(self, event: RollbackEvent) -> None:
        rollback.progress(event.rt, event.run_id, event.generation)

    def on_step_settled(self, event: RollbackEvent) -> None:
        rollback.step_settled(event.rt, event.run_id)

    def on_late_completion(self, event: RollbackEvent) -> None:
        assert event.step_id is not None and event.run_status is not None
        rollback.late_completion(event.rt, event.run_id, event.step_id, event.run_status)

    def on_step_fallback(self, event: RollbackEvent) -> None:
        assert event.step_id is not None
        rollback.mark_not_needed(event.rt, event.run_id, event.step_id)


ROLLBACK = Rollback()
