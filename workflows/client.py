"""The Python API: start a workflow, look at a run, wait for it, resume, cancel, signal.

run = start("checkout", {"order": {...}})
run.wait(timeout=30)            # -> the finished RunRecord (raises TimeoutError)
get_run(run.id).status
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import canvasflow.app  # noqa: F401  (the composition root: tasks, rollback listener, telemetry)
from canvasflow.config.errors import InputError
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.runs import batch, lifecycle, resumption, rollbacks, upgrades
from canvasflow.workflows.runs.reading import read_run
from canvasflow.workflows.runs.upgrade_plan import UpgradePlan
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import RUN_STATUSES, TERMINAL, RunRecord, StepRecord


@dataclass(frozen=True)
class Run:
    """A handle on a run; every property reads the journal afresh."""

    id: str

    @property
    def record(self) -> RunRecord:
        return get_run(self.id)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def steps(self) -> list[StepRecord]:
        return self.record.steps

    @property
    def result(self) -> Any:
        return self.record.result

    def wait(self, timeout: float = 60.0) -> RunRecord:
        """Block until the run is terminal (or waiting for a signal); TimeoutError after ``timeout``."""
        rt = runtime()
        deadline = time.monotonic() + timeout
        while True:
            record = rt.store.get_run(self.id, with_steps=False)
            if record is not None and (record.status in TERMINAL or record.status == "waiting"):
                return get_run(self.id)
            left = deadline - time.monotonic()
            if left <= 0:
                status = record.status if record else "unknown"
                raise TimeoutError(f"run {self.id} still {status} after {timeout:g}s")
            rt.state.wait_finished(self.id, min(left, 0.5))


def start(
    name: str,
    inputs: Any = None,
    *,
    version: str | None = None,
    key: str | None = None,
    tags: Sequence[str] = (),
    priority: int | None = None,
) -> Run:
    """Validate ``inputs``, journal a new run of workflow ``name`` and dispatch its first steps.

    ``key`` is a business key (``"order-42"``): a second start with the same key returns
    the first run, even when both race (a key names one run across all workflows: another
    workflow's start with it is refused). ``tags`` are strings to find runs by
    (``list_runs(tags=["tenant:acme"])``). ``priority`` (0 to 9, 9 first) goes with every step
    of the run and its compensations, ahead of the steps' own ``@step(priority=)``.
    """
    return Run(
        lifecycle.start_run(name, inputs or {}, version=version, key=key, tags=tags, priority=priority)
    )


def start_many(
    name: str,
    inputs: Sequence[Any],
    *,
    version: str | None = None,
    keys: Sequence[str | None] | None = None,
    tags: Sequence[str] = (),
) -> list[Run]:
    """Start one run of workflow ``name`` per item of ``inputs``, in one batch; their handles, in order.

    All or nothing before anything is written: when any input is refused (invalid inputs, a
    key held by another workflow's run, ...), InputError names each refused input by its
    position and no run is started. ``keys`` (one per input, ``None`` for none) make each
    start idempotent as with ``start``; ``tags`` go on every run. About 10x ``start`` in a
    loop: one journal transaction, one Redis pipeline and batched publishing for all runs.
    """
    return [Run(run_id) for run_id in batch.start_many(name, inputs, version=version, keys=keys, tags=tags)]


# Workflow.start(**inputs) is start(its name, inputs, version=its version): the faces hand out
# Workflow and registry from here, so that whoever has a Workflow has it launchable
registry.set_launcher(start)


def get_run(run_id: str) -> RunRecord:
    """The run and its steps; live step states from Redis fill in what the journal lacks yet."""
    return read_run(run_id)


def list_runs(
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    *,
    key: str | None = None,
    tags: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RunRecord]:
    """Runs newest first (without their steps); every filter given must hold, each of ``tags``
    included; ``since``/``until`` bound the creation time (from included, until excluded)."""
    if status is not None and status not in RUN_STATUSES:
        raise InputError(f"unknown run status {status!r}: one of {', '.join(RUN_STATUSES)}")
    return runtime().store.list_runs(
        status=status, workflow=workflow, key=key, tags=tags, since=since, until=until, limit=limit
    )


def resume(run_id: str, *, from_step: str | None = None, to_version: str | None = None) -> Run:
    """Run a failed or cancelled run again from where it stopped (completed steps kept); with
    ``from_step``, run that step and everything downstream of it again, keeping the rest; with
    ``to_version``, under that version of its workflow (as ``migrate``)."""
    if to_version is not None:
        if from_step is not None:
            raise InputError("resume takes from_step or to_version, not both: migrate first, then resume")
        return migrate(run_id, to_version)
    resumption.resume(run_id, from_step=from_step)
    return Run(run_id)


def check_versions(workflow: str, to_version: str) -> list[UpgradePlan]:
    """For each active, failed or cancelled run of ``workflow`` under another version: can it
    move to ``to_version``, which completed steps are kept, which steps run, which are skipped."""
    return upgrades.check_versions(workflow, to_version)


def migrate(run_id: str, to_version: str) -> Run:
    """Move a run (active, failed or cancelled) to ``to_version`` of its workflow, keeping its
    completed steps; UpgradeRefused, naming the first step that does not map, when it cannot."""
    upgrades.migrate(run_id, to_version)
    return Run(run_id)


def cancel(run_id: str, *, compensate: bool = False) -> Run:
    """Stop the run: no new step starts. With ``compensate`` also roll it back: running steps
    are waited for (or revoked, per the workflow's ``inflight``) and every completed step is
    compensated, one that completes after the cancel included."""
    rollbacks.cancel(run_id, compensate=compensate)
    return Run(run_id)


def undo(run_id: str) -> Run:
    """Roll back a succeeded or cancelled run: every completed step's compensation, newest first."""
    rollbacks.undo(run_id)
    return Run(run_id)


def compensate(run_id: str) -> Run:
    """Retry the compensations of a ``compensation_failed`` run that failed; of a cancelled run,
    compensate every completed step (as ``undo``)."""
    rollbacks.retry_compensation(run_id)
    return Run(run_id)


def signal(run_id: str, name: str, payload: Any = None) -> Run:
    lifecycle.signal(run_id, name, payload)
    return Run(run_id)


__all__ = [
    "Run",
    "UpgradePlan",
    "Workflow",
    "cancel",
    "check_versions",
    "compensate",
    "get_run",
    "list_runs",
    "migrate",
    "registry",
    "resume",
    "signal",
    "start",
    "undo",
]
