"""``context()`` for a step or compensation run by ``run_inline``: the same fields as on a worker
(run, step, generation, attempt, idempotency key, workflow, version, lineage), with progress
and run metadata kept in the inline run instead of Redis, so a body written for workers runs
unchanged in a unit test."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from canvasflow.workflows.runs.records import run_labels
from canvasflow.workflows.runtime.execution import ExecutionContext, step_key, undo_key
from canvasflow.workflows.runtime.progress import progress_value

WORKER = "inline"


class InlineMetadata(dict[str, Any]):
    """A run's metadata map in memory; values must be JSON, as in Redis (a copy is kept)."""

    def __setitem__(self, name: str, value: Any) -> None:
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"run metadata {name!r} must be JSON ({exc})") from None
        super().__setitem__(name, json.loads(encoded))

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


@dataclass(frozen=True)
class InlineContext(ExecutionContext):
    """An ExecutionContext whose reads and writes stay in the inline run."""

    labels: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    shared: InlineMetadata = field(default_factory=InlineMetadata, repr=False, compare=False)
    parents: tuple[tuple[str, str], ...] = ()  # (run, step) of the runs above, root first
    on_progress: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, done: float, total: float | None = None, note: str | None = None) -> None:
        value = progress_value(done, total, note)
        if self.on_progress is not None and not self.compensation:
            self.on_progress(self.step_id, value)

    @property
    def _labels(self) -> dict[str, str]:  # type: ignore[override]
        return self.labels

    @property
    def lineage(self) -> list[tuple[str, str]]:
        return [*self.parents, (self.run_id, self.step_id)]

    @property
    def metadata(self) -> InlineMetadata:  # type: ignore[override]
        return self.shared


@dataclass
class InlineScope:
    """What every context of one inline run shares: its id, labels, metadata, parents, progress."""

    run_id: str
    workflow: str
    version: str
    parents: tuple[tuple[str, str], ...] = ()
    metadata: InlineMetadata = field(default_factory=InlineMetadata)
    on_progress: Callable[[str, dict[str, Any]], None] | None = None

    def step(self, unit: str, task: str, attempt: int, queue: str | None) -> InlineContext:
        """The context of ``unit`` (a step, or a map chunk ``<step>#<i>``) in its ``attempt``."""
        return self._context(unit, task, attempt, queue, step_key(self.run_id, unit, 1), compensation=False)

    def compensation(self, unit: str, task: str, attempt: int, queue: str | None) -> InlineContext:
        return self._context(unit, task, attempt, queue, undo_key(self.run_id, unit), compensation=True)

    def _context(
        self, unit: str, task: str, attempt: int, queue: str | None, key: str, *, compensation: bool
    ) -> InlineContext:
        parent_run, parent_step = self.parents[-1] if self.parents else (None, None)
        labels = run_labels(self.workflow, self.version, parent_run, parent_step)
        return InlineContext(
            run_id=self.run_id,
            step_id=unit,
            generation=1,
            attempt=attempt,
            idempotency_key=key,
            queue=queue,
            worker=WORKER,
            compensation=compensation,
            task=task,
            labels=labels,
            shared=self.metadata,
            parents=self.parents,
            on_progress=self.on_progress,
        )
