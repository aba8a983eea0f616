"""What the run store hands out: plain, typed records (no ORM objects leave the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

RUN_STATUSES = (
    "pending",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "compensating",
    "compensated",
    "compensation_failed",
    "cancelled",
)
TERMINAL = frozenset({"succeeded", "failed", "compensated", "compensation_failed", "cancelled"})
RESUMABLE = frozenset({"failed", "cancelled"})


@dataclass
class StepRecord:
    step_id: str
    task: str
    status: str
    kind: str = "task"
    attempts: int = 0
    queue: str | None = None
    worker: str | None = None
    task_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: Any = None
    compensation: str | None = None
    compensation_status: str | None = None
    compensation_error: Any = None
    # the router's decision: {"engine", "queue", "strategy", "reason"} (and "tried" after a fallback)
    route: Any = None
    # every routing decision, oldest first, each with its outcome (workers/routing/decisions.py)
    routes: Any = None
    # a sleep step's due time (durable timers): when the timer service wakes it
    wakes_at: datetime | None = None
    # not columns: every attempt (generation, attempt, status, worker, queue, started_at,
    # finished_at, error) from the journal's events, and the last progress the step reported
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] | None = None

    DERIVED: ClassVar[frozenset[str]] = frozenset({"attempt_log", "progress"})

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("started_at", "finished_at", "wakes_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass
class RunRecord:
    id: str
    workflow: str
    version: str
    status: str
    generation: int
    inputs: Any
    graph: dict[str, Any]
    created_at: datetime
    result: Any = None
    error: Any = None
    parent_run_id: str | None = None
    parent_step: str | None = None
    finished_at: datetime | None = None
    key: str | None = None
    tags: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, step_id: str) -> StepRecord:
        for s in self.steps:
            if s.step_id == step_id:
                return s
        raise KeyError(step_id)

    def to_json(self, *, with_graph: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status,
            "generation": self.generation,
            "inputs": self.inputs,
            "result": self.result,
            "error": self.error,
            "parent_run_id": self.parent_run_id,
            "parent_step": self.parent_step,
            "key": self.key,
            "tags": self.tags,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "steps": [s.to_json() for s in self.steps],
        }
        if with_graph:
            out["graph"] = self.graph
        return out
