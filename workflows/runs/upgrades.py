"""Moving runs in flight to another version of their workflow: check which can, move one.

:func:`check_versions` plans every active, failed and cancelled run of the other versions
(``upgrade_plan.py`` decides, run by run); :func:`migrate` moves one compatible run: an active
one is cancelled first (its queued messages are then skipped at their claim; a run with a
step running is refused until it finishes), then the journal takes the new version and graph
and the run restarts through the resume path (``resumption.restart``), its completed steps
kept with their results. An incompatible run is refused, naming the first step that does not
map.
"""

from __future__ import annotations

import structlog

from canvasflow.config.brokers import broker_kind
from canvasflow.config.errors import CanvasflowError, UpgradeRefused
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.runs import rollbacks
from canvasflow.workflows.runs.launch import step_rows
from canvasflow.workflows.runs.records import get_record
from canvasflow.workflows.runs.resumption import restart
from canvasflow.workflows.runs.upgrade_plan import UpgradePlan, plan_upgrade, refused
from canvasflow.workflows.runtime import priorities
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.secrets import for_journal
from canvasflow.workflows.store.records import RunRecord

log = structlog.get_logger("canvasflow.lifecycle")

ACTIVE = ("pending", "running", "waiting")
MOVABLE = (*ACTIVE, "failed", "cancelled")


def check_versions(workflow: str, to_version: str, *, limit: int = 10_000) -> list[UpgradePlan]:
    """One plan per active, failed or cancelled run of ``workflow`` under another version than
    ``to_version`` (newest first): could it move, which steps are kept, run, skipped."""
    rt = runtime()
    wf = registry.get(workflow, to_version)
    plans: list[UpgradePlan] = []
    for status in MOVABLE:
        for run in rt.store.list_runs(status=status, workflow=workflow, limit=limit):
            if run.version != to_version:
                plans.append(plan_for(rt, get_record(run.id), wf)[0])
    return plans


def plan_for(rt: Runtime, record: RunRecord, wf: Workflow) -> tuple[UpgradePlan, StepGraph | None]:
    """The plan for moving ``record`` to ``wf``, and the graph ``wf`` compiles for the run's
    inputs (as the journal keeps it: secrets masked, priorities in the broker's terms)."""
    old = StepGraph.from_json(record.graph)
    try:
        values = wf.validate(record.inputs)
        compiled = wf.compile(values)
    except CanvasflowError as exc:
        why = f"version {wf.version} refuses the run's inputs: {str(exc).splitlines()[0]}"
        return refused(record.id, record.workflow, record.version, wf.version, record.status, why), None
    priorities.apply(compiled, priorities.run_priority(old), broker_kind(rt.app.conf.broker_url))
    masked, _ = for_journal(rt.app.tasks, compiled.to_json(), record.inputs)
    new = StepGraph.from_json(masked)
    plan = plan_upgrade(
        run_id=record.id,
        workflow=record.workflow,
        from_version=record.version,
        to_version=wf.version,
        status=record.status,
        old=old,
        completed=_completed(rt, record),
        new=new,
    )
    return plan, new


def _completed(rt: Runtime, record: RunRecord) -> set[str]:
    """The run's completed steps as a restart keeps them: the journal's, and those Redis has
    completed that the journal has not written yet (a step that finished after a cancel)."""
    done = {s.step_id for s in record.steps if s.status == "succeeded"}
    return done | {sid for sid, st in rt.state.step_states(record.id).items() if st == "succeeded"}


def migrate(run_id: str, to_version: str) -> RunRecord:
    """Move run ``run_id`` to ``to_version`` of its workflow, keeping its completed steps;
    UpgradeRefused when it cannot (naming the first step that does not map)."""
    rt = runtime()
    record = get_record(run_id)
    wf = registry.get(record.workflow, to_version)
    if record.version == to_version:
        raise UpgradeRefused(f"run {run_id} already runs {record.workflow} version {to_version}")
    if record.status not in MOVABLE:
        raise UpgradeRefused(
            f"run {run_id} is {record.status}; only active, failed and cancelled runs move to another "
            "version (a finished run stays as it ran: start a new run)"
        )
    _refuse_unless_compatible(plan_for(rt, record, wf)[0])
    if record.status in ACTIVE:
        running = sorted(sid for sid, st in rt.state.step_states(run_id).items() if st == "running")
        if running:
            raise UpgradeRefused(
                f"run {run_id} has steps running ({', '.join(running)}); migrate it once they finished "
                "(`canvasflow status RUN`), or cancel it and migrate the cancelled run"
            )
        rollbacks.cancel(run_id)  # queued messages of this generation are skipped at their claim
        record = get_record(run_id)
    plan, graph = plan_for(rt, record, wf)  # again: a step may have completed meanwhile
    _refuse_unless_compatible(plan)
    assert graph is not None
    rt.store.record_definition(wf.name, wf.version, wf.inputs.model_json_schema())
    rows = step_rows(n for n in graph.steps.values() if n.id not in plan.kept)
    moved = {"from_version": record.version, "to_version": wf.version, **plan.to_json()}
    if not rt.store.move_version(
        run_id,
        (record.status,),
        version=wf.version,
        graph=graph.to_json(),
        steps=rows,
        skipped=plan.skipped,
        data=moved,
    ):
        raise UpgradeRefused(f"run {run_id} changed state while moving; look at it again")
    record = get_record(run_id)
    if not restart(rt, record, (record.status,)):
        raise UpgradeRefused(f"run {run_id} changed state while restarting under version {to_version}")
    log.info("run moved", run_id=run_id, version=to_version, kept=len(plan.kept), run=len(rows))
    return get_record(run_id)


def _refuse_unless_compatible(plan: UpgradePlan) -> None:
    first = plan.first_mismatch
    if first is not None:
        raise UpgradeRefused(
            f"run {plan.run_id} cannot move to {plan.workflow} version {plan.to_version}: step "
            f"{first.step_id} does not map ({first.reason}); resume it under version {plan.from_version} "
            f"(keep that version registered), or start a new run of version {plan.to_version}"
        )
