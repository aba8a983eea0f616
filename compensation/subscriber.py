"""The rollback as a core listener of the runtime's control-flow events (``runtime/control.py``).

Importing this module registers it (``core=True``: its exceptions propagate) in this process;
``canvasflow.workflows`` imports it, so every process that runs steps or moves runs has it.
The rollback module itself is imported on the first event: this module is imported while
``canvasflow.workflows`` initialises, which may happen in the middle of importing a
compensation module (``claims`` reads the runtime's state helpers).
"""

from __future__ import annotations

from types import ModuleType

from canvasflow.workflows.runtime.control import RollbackEvent, RollbackHooks
from canvasflow.workflows.telemetry.hooks import add_middleware


def _rollback() -> ModuleType:
    from canvasflow.compensation import rollback

    return rollback


class Rollback(RollbackHooks):
    """Start, move on and close the rollback of failed runs (``compensation/rollback.py``)."""

    def on_rollback_needed(self, event: RollbackEvent) -> None:
        _rollback().begin(event.rt, event.run_id, event.generation)

    def on_rollback_progress(self, event: RollbackEvent) -> None:
        _rollback().progress(event.rt, event.run_id, event.generation)

    def on_step_settled(self, event: RollbackEvent) -> None:
        _rollback().step_settled(event.rt, event.run_id)

    def on_late_completion(self, event: RollbackEvent) -> None:
        assert event.step_id is not None and event.run_status is not None
        _rollback().late_completion(event.rt, event.run_id, event.step_id, event.run_status)

    def on_step_fallback(self, event: RollbackEvent) -> None:
        assert event.step_id is not None
        _rollback().mark_not_needed(event.rt, event.run_id, event.step_id)


ROLLBACK = add_middleware(Rollback(), core=True)
