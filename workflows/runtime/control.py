"""Control-flow events the runtime raises for its core listeners: the rollback.

The runtime knows *that* a run must roll back, or that something a rollback waits on
changed; it does not know *how* to roll back. It raises these internal hooks through the
middleware registry (``telemetry.registry``) and the rollback (``compensation/subscriber.py``),
registered there with ``core=True`` by the composition root (``canvasflow.app``), acts on them. So
no module under ``workflows/runtime/`` imports ``canvasflow.compensation``.

These hooks are internal (not on :class:`~canvasflow.workflows.telemetry.hooks.Middleware`,
not part of the public interface): they carry the process's ``Runtime`` and their listener's
exceptions propagate (a delivery that could not move the rollback on fails, and its message
is redelivered). Raising one with no core listener registered is a bug, not a no-op:
:class:`NoRollbackListener` says so rather than leaving a failed run un-compensated.
"""

from __future__ import annotations

from dataclasses import dataclass

from canvasflow.config.errors import CanvasflowError
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.telemetry.hooks import Middleware
from canvasflow.workflows.telemetry.registry import core_listening, emit


class NoRollbackListener(CanvasflowError):
    """A run needs its rollback but no rollback listens in this process."""


@dataclass(slots=True)
class RollbackEvent:
    rt: Runtime
    run_id: str
    generation: int = 1
    step_id: str | None = None
    run_status: str | None = None


class RollbackHooks(Middleware):
    """The internal hooks a rollback implements (each a no-op here)."""

    def on_rollback_needed(self, event: RollbackEvent) -> None:
        """A failure or a passed deadline moved the run to ``compensating``: start its rollback."""

    def on_rollback_progress(self, event: RollbackEvent) -> None:
        """Something the rollback of a ``compensating`` run waits on may have changed (the sweep)."""

    def on_step_settled(self, event: RollbackEvent) -> None:
        """A step in flight was skipped, failed or revoked; the run may be rolling back."""

    def on_late_completion(self, event: RollbackEvent) -> None:
        """A step completed after its run stopped being active (``run_status``): undo it too."""

    def on_step_fallback(self, event: RollbackEvent) -> None:
        """A step completed with its fallback (``on_failure="continue"``): nothing to undo."""


def _raise(hook: str, event: RollbackEvent) -> None:
    if not core_listening(hook):
        raise NoRollbackListener(
            f"run {event.run_id} needs its rollback ({hook}) but no rollback listens in this process: "
            "import canvasflow.app (the composition root registers canvasflow.compensation.subscriber)"
        )
    emit(hook, event)


def rollback_needed(rt: Runtime, run_id: str, generation: int) -> None:
    _raise("on_rollback_needed", RollbackEvent(rt, run_id, generation))


def rollback_progress(rt: Runtime, run_id: str, generation: int) -> None:
    _raise("on_rollback_progress", RollbackEvent(rt, run_id, generation))


def step_settled(rt: Runtime, run_id: str) -> None:
    _raise("on_step_settled", RollbackEvent(rt, run_id))


def late_completion(rt: Runtime, run_id: str, step_id: str, run_status: str) -> None:
    _raise("on_late_completion", RollbackEvent(rt, run_id, step_id=step_id, run_status=run_status))


def step_fallback(rt: Runtime, run_id: str, unit: str) -> None:
    _raise("on_step_fallback", RollbackEvent(rt, run_id, step_id=unit))
