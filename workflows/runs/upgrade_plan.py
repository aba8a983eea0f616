"""Can a run move to another version of its workflow? A pure comparison, no I/O.

A run journaled under one version (its step graph and which of its steps completed) and the
graph the new version compiles from the same inputs go in; an :class:`UpgradePlan` comes out.
A completed step *maps* onto the new graph when the new graph has a step of the same id, the
same task and kind, the same arguments (the same expressions over inputs and earlier results,
as the new definition computes them) and the same special spec (a signal's name, a child
workflow's inputs), and when every step it waits for in the new graph is also kept: a step
that completed before a step the new version puts in front of it cannot be kept. A run moves
only when every completed step maps; the others of the new graph run, and steps of the old
graph that never completed and are gone from the new one are skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from canvasflow.workflows.runtime.graph import StepGraph, StepNode


@dataclass(frozen=True)
class Mismatch:
    """A completed step that does not map onto the new graph, and why."""

    step_id: str
    reason: str


@dataclass
class UpgradePlan:
    """What moving a run to ``to_version`` would do, step by step."""

    run_id: str
    workflow: str
    from_version: str
    to_version: str
    status: str
    kept: list[str] = field(default_factory=list)  # completed, mapped: not run again, results reused
    rerun: list[str] = field(default_factory=list)  # in both versions, not completed: will run
    added: list[str] = field(default_factory=list)  # only in the new version: will run
    skipped: list[str] = field(default_factory=list)  # only in the old version, never completed
    mismatches: list[Mismatch] = field(default_factory=list)  # completed steps that do not map

    @property
    def compatible(self) -> bool:
        return not self.mismatches

    @property
    def first_mismatch(self) -> Mismatch | None:
        return self.mismatches[0] if self.mismatches else None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "status": self.status,
            "compatible": self.compatible,
            "kept": self.kept,
            "rerun": self.rerun,
            "added": self.added,
            "skipped": self.skipped,
            "mismatches": [{"step_id": m.step_id, "reason": m.reason} for m in self.mismatches],
        }


def refused(
    run_id: str, workflow: str, from_version: str, to_version: str, status: str, why: str
) -> UpgradePlan:
    """A plan for a run the new version cannot even compile for (e.g. inputs it refuses)."""
    plan = UpgradePlan(run_id, workflow, from_version, to_version, status)
    plan.mismatches.append(Mismatch("(inputs)", why))
    return plan


def plan_upgrade(
    *,
    run_id: str,
    workflow: str,
    from_version: str,
    to_version: str,
    status: str,
    old: StepGraph,
    completed: Collection[str],
    new: StepGraph,
) -> UpgradePlan:
    """Compare run ``run_id``'s journaled graph ``old`` (``completed`` its completed step ids) with
    ``new``, the graph the target version compiles from the run's inputs."""
    plan = UpgradePlan(run_id, workflow, from_version, to_version, status)
    done = [sid for sid in old.steps if sid in completed]  # in the old graph's (dispatch) order
    why = {sid: _differs(old.steps[sid], new.steps.get(sid)) for sid in done}
    keep: set[str] = set()
    for sid in new.steps:  # dispatch order: a step's dependencies come before it
        if sid in why and why[sid] is None:
            early = [d for d in new.steps[sid].deps if d not in keep]
            if early:
                why[sid] = (
                    f"it completed before {', '.join(early)}, which the new version runs before it "
                    "and which would run now"
                )
            else:
                keep.add(sid)
    plan.mismatches = [Mismatch(sid, reason) for sid in done if (reason := why[sid]) is not None]
    plan.kept = [sid for sid in new.steps if sid in keep]
    plan.rerun = [sid for sid in new.steps if sid in old.steps and sid not in keep]
    plan.added = [sid for sid in new.steps if sid not in old.steps]
    plan.skipped = [sid for sid in old.steps if sid not in new.steps and sid not in completed]
    return plan


def _differs(was: StepNode, now: StepNode | None) -> str | None:
    """Why completed step ``was`` does not map onto ``now`` (None: it maps)."""
    if now is None:
        return "the new version has no step with this id"
    if now.task != was.task:
        return f"its task is {now.task} in the new version, it ran {was.task}"
    if now.kind != was.kind:
        return f"it is a {now.kind} step in the new version, it ran as a {was.kind} step"
    if now.args != was.args or now.kwargs != was.kwargs:
        return "the new version computes other arguments for it"
    if now.spec != was.spec:
        return "its spec (signal name, map or child workflow) differs in the new version"
    return None
