"""Run a workflow in this process, without Redis, a broker or a worker: for unit tests.

    from canvasflow.testing import run_inline
    record = run_inline("checkout", {"order": {...}})
    assert record.status == "compensated" and record.step("charge").compensation_status == "compensated"

The workflow is compiled by the real compiler (canvas or DAG form) and its step graph is
executed here with the runtime's semantics: a step's arguments are resolved from the
results of the steps it reads (``graph.resolve``), so a chained step receives the previous
result first and a chord body the list of header results in order; results go through JSON
as they do on the broker; a map step runs its chunks with the real chunk task; retries
(``retries=``) are honoured without their backoff; ``on_failure="continue"`` completes with
the fallback; sub-workflows run inline too. Steps whose dependencies are complete are
"dispatched" together, in graph order, and all run even when one of them fails (in a worker
they would be in flight; ``inflight="revoke"`` skips them instead). On a failure the author's
errbacks are called once, then the rollback planner (``compensation.planner``) orders the
compensations, reverse dependency order, each with the step's result then its arguments.

The answer is a :class:`RunRecord` like ``get_run`` returns; ``wait_signal`` steps complete
with the payloads given in ``signals=``, else the run stops ``waiting``. Steps and
compensations get a real ``context()`` (``workflows/runs/inline_context.py``): run, step,
attempt, idempotency key, lineage; progress lands on the step's record, metadata stays in
the run.
A ``sleep`` step's time passes at once: it records when it would wake (``wakes_at``) and hands
on its input.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Task

from canvasflow.compensation import tasks as _compensation_tasks  # noqa: F401  (the chunk compensation)
from canvasflow.compensation.planner import node_of, plan
from canvasflow.compensation.rollback import CHUNK_COMP_TASK
from canvasflow.config.celery_app import app
from canvasflow.config.errors import DeadlineExceeded
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.runs.inline_calls import call_errback, call_with_retries
from canvasflow.workflows.runs.inline_clock import Clock
from canvasflow.workflows.runs.inline_context import WORKER, InlineScope
from canvasflow.workflows.runs.inline_deadlines import InlineDeadlines
from canvasflow.workflows.runtime.errors import error_info
from canvasflow.workflows.runtime.execution import ExecutionContext, executing
from canvasflow.workflows.runtime.failure import failure_status
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, refs_in, resolve
from canvasflow.workflows.runtime.outcome import rollback_status
from canvasflow.workflows.runtime.timers import due_at
from canvasflow.workflows.runtime.wire import CHUNK_TASK, encode_result
from canvasflow.workflows.store.records import RunRecord, StepRecord


def run_inline(
    workflow: Workflow | str,
    inputs: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    signals: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
) -> RunRecord:
    """Validate ``inputs``, compile ``workflow`` and run it to its end in this process. With
    ``clock`` (a :class:`FakeClock`), the run's ``timeout`` and its steps' ``start_to_close``
    and ``schedule_to_start`` are measured by it (without one, deadlines are not applied)."""
    return _inline(workflow, inputs, version, dict(signals or {}), (), clock)


def _inline(
    workflow: Workflow | str,
    inputs: Mapping[str, Any] | None,
    version: str | None,
    signals: dict[str, Any],
    parents: tuple[tuple[str, str], ...],
    clock: Clock | None = None,
) -> RunRecord:
    wf = workflow if isinstance(workflow, Workflow) else registry.get(workflow, version)
    values = wf.validate(dict(inputs or {}))
    return InlineRun(wf, values, wf.compile(values), signals, parents, clock).run()


class InlineRun:
    """One run's graph, executed step by step; its state is kept the way the planner reads it."""

    def __init__(
        self,
        wf: Workflow,
        values: dict[str, Any],
        graph: StepGraph,
        signals: dict[str, Any],
        parents: tuple[tuple[str, str], ...] = (),
        clock: Clock | None = None,
    ) -> None:
        self.wf, self.values, self.graph, self.signals = wf, values, graph, signals
        self.deadlines = InlineDeadlines(graph, clock)
        self.id = f"inline-{uuid.uuid4().hex}"
        self.scope = InlineScope(self.id, wf.name, wf.version, parents, on_progress=self._progress)
        self.results: dict[str, Any] = {}
        self.states: dict[str, str] = {}  # unit -> succeeded | failed | partial
        self.comp: dict[str, str] = {}  # unit -> not_needed | compensated | compensation_failed
        self.records: dict[str, StepRecord] = {
            sid: StepRecord(
                step_id=sid, task=n.task, status="pending", kind=n.kind, queue=n.options.get("queue"),
                compensation=n.compensation,
            )
            for sid, n in graph.steps.items()
        }  # fmt: skip
        self.error: dict[str, Any] | None = None
        self.errbacks_called: set[int] = set()

    # -- the run ----------------------------------------------------------------------
    def run(self) -> RunRecord:
        created = datetime.now(UTC)
        status = "running"
        while status == "running":
            wave = [
                sid for sid in self.graph.ready(set(self.results)) if self.records[sid].status == "pending"
            ]
            if not wave:
                break
            self.deadlines.dispatched(wave)
            for sid in wave:
                if self.error is None and (expired := self.deadlines.run_expired()) is not None:
                    self._fail_run(expired)
                if self.error is not None and self.graph.options.get("inflight") == "revoke":
                    break
                if not self._step(self.graph.steps[sid]):
                    status = "waiting"
            if self.error is not None:
                status = self._roll_back()
        if status not in ("running", "waiting"):
            for record in self.records.values():  # never ran (as in a run on workers)
                if record.status == "pending":
                    record.status = "skipped"
        result = None
        if status == "running":
            status = "succeeded"
            result = resolve(self.graph.result, {r: self.results[r] for r in refs_in(self.graph.result)})
        return RunRecord(
            id=self.id, workflow=self.wf.name, version=self.wf.version, status=status, generation=1,
            inputs=self.values, graph=self.graph.to_json(), created_at=created, result=result,
            error=self.error, finished_at=None if status == "waiting" else datetime.now(UTC),
            steps=list(self.records.values()),
        )  # fmt: skip

    def _fail_run(self, exc: DeadlineExceeded) -> None:
        """The run's ``timeout`` passed: it fails (and rolls back) as on workers."""
        self.error = {**error_info(exc), "step": None}

    def _step(self, node: StepNode) -> bool:
        """Run one step; False when it waits for a signal that was not given."""
        if self.error is not None and self.error.get("step") is None:  # the run's timeout passed
            return True
        if (late := self.deadlines.not_started(node.id)) is not None:
            self._fail(node.id, late, None)
            return True
        args = [resolve(a, self.results) for a in node.args]
        kwargs = {k: resolve(v, self.results) for k, v in node.kwargs.items()}
        record = self.records[node.id]
        record.started_at = datetime.now(UTC)
        record.worker = WORKER
        if node.kind == "signal":
            name = node.spec["name"]
            if name not in self.signals:
                record.status = "waiting"
                return False
            self._succeed(node.id, self.signals[name])
        elif node.kind == "sleep":
            record.wakes_at = datetime.fromtimestamp(due_at(node.spec, record.started_at.timestamp()), UTC)
            self._succeed(node.id, args[0] if args else None)
        elif node.kind == "map":
            self._map(node, args)
        elif node.kind == "workflow":
            self._child(node, args, kwargs)
        else:
            self._task(node, app.tasks[node.task], args, kwargs)
        return True

    def _task(self, node: StepNode, task: Task, args: list[Any], kwargs: dict[str, Any]) -> None:
        record = self.records[node.id]
        queue = node.options.get("queue")
        try:
            value, record.attempts = call_with_retries(
                task,
                args,
                kwargs,
                lambda attempt: self.scope.step(node.id, node.task, attempt, queue),
                self.deadlines.limited(node.id),
            )
            self._succeed(node.id, value)
        except Exception as exc:
            record.attempts = getattr(exc, "canvasflow_attempts", 1)
            if getattr(task, "on_failure_policy", "compensate") != "continue":
                self._fail(node.id, exc, task)
                return
            record.error = {**error_info(exc, task), "fallback": True}
            self.comp[node.id] = "not_needed"
            self._succeed(node.id, getattr(task, "fallback", None))

    def _map(self, node: StepNode, args: list[Any]) -> None:
        """The chunks of a map step, each with the real chunk task; results in item order."""
        items = list(args[0]) if args else []
        size = max(int(node.spec.get("chunk_size") or 1), 1)
        chunk_task, values, failure = app.tasks[CHUNK_TASK], [], None
        for i, start in enumerate(range(0, len(items), size)):
            unit = f"{node.id}#{i}"
            record = StepRecord(step_id=unit, task=CHUNK_TASK, status="pending", kind="chunk", worker=WORKER)
            record.queue, record.attempts, record.started_at = node.options.get("queue"), 1, datetime.now(UTC)
            record.compensation = node.compensation
            self.records[unit] = record
            try:
                with executing(self.scope.step(unit, node.spec["mapper"], 1, record.queue)):
                    out = chunk_task.run(node.spec["mapper"], items[start : start + size])
                done = json.loads(encode_result(unit, out))
            except Exception as exc:
                partial_done = getattr(exc, "canvasflow_partial", None)
                record.status, record.error = "failed", {**error_info(exc), "step": unit}
                record.finished_at = datetime.now(UTC)
                self.states[unit] = "partial" if partial_done else "failed"
                self.results[unit] = partial_done
                failure = failure or (unit, exc)
                continue
            record.status, record.result, record.finished_at = "succeeded", done, datetime.now(UTC)
            self.states[unit], self.results[unit] = "succeeded", done
            values.extend(done)
        if failure is not None:
            self._fail(node.id, failure[1], None, unit=failure[0])
        else:
            self._succeed(node.id, values)

    def _child(self, node: StepNode, args: list[Any], kwargs: dict[str, Any]) -> None:
        spec = {**node.spec, **kwargs}
        values = dict(spec.get("inputs") or {})
        if args and spec.get("result_as"):
            values[spec["result_as"]] = args[0]
        child = _inline(
            spec["workflow"], values, None, self.signals, (*self.scope.parents, (self.id, node.id))
        )
        self.records[node.id].attempts = 1
        if child.status == "succeeded":
            self._succeed(node.id, child.result)
        else:
            message = (child.error or {}).get("message")
            self._fail(node.id, RuntimeError(f"child run {child.id} {child.status}: {message}"), None)

    # -- outcomes --------------------------------------------------------------------------
    def _progress(self, unit: str, value: dict[str, Any]) -> None:
        """``context().progress(...)`` of a step: on its record, as ``get_run`` shows it."""
        self.records[unit].progress = value

    def _succeed(self, step_id: str, value: Any) -> None:
        record = self.records[step_id]
        try:
            value = json.loads(encode_result(step_id, value))  # as it crosses the broker
        except TypeError as exc:
            self._fail(step_id, exc, None)
            return
        record.status, record.result, record.finished_at = "succeeded", value, datetime.now(UTC)
        record.attempts = record.attempts or 1
        self.states[step_id], self.results[step_id] = "succeeded", value

    def _fail(self, step_id: str, exc: BaseException, task: Task | None, unit: str | None = None) -> None:
        record = self.records[step_id]
        error = {**error_info(exc, task), "step": unit or step_id}
        record.status, record.error, record.finished_at = "failed", error, datetime.now(UTC)
        record.attempts = record.attempts or 1
        self.states[step_id] = "failed"
        if self.error is None:
            self.error = error
        self._errbacks(step_id, exc)

    def _errbacks(self, step_id: str, exc: BaseException) -> None:
        """Each author errback whose scope holds the step, once, called the way Celery calls it."""
        for index, eb in enumerate(self.graph.errbacks):
            if step_id in eb.scope and index not in self.errbacks_called:
                self.errbacks_called.add(index)
                call_errback(eb.signature, f"{self.id}-{step_id}", self.graph.steps[step_id].task, exc)

    def _roll_back(self) -> str:
        """Compensate with the planner until it has nothing left; the run's final status."""
        if failure_status(self.graph) == "failed":
            return "failed"
        while True:
            p = plan(self.graph, self.states, self.comp)
            if not p.ready:
                return rollback_status(self.comp, p.failed, "failure")
            for unit in p.ready:
                self._compensate(unit)

    def _compensate(self, unit: str) -> None:
        node = self.graph.steps[node_of(unit)]
        assert node.compensation is not None
        comp_task = app.tasks[node.compensation]
        args = [resolve(a, self.results) for a in node.args]
        kwargs = {k: resolve(v, self.results) for k, v in node.kwargs.items()}
        record = self.records[unit]
        queue = node.options.get("queue")

        def undo_context(attempt: int) -> ExecutionContext:
            return self.scope.compensation(unit, comp_task.name, attempt, queue)

        try:
            if node.kind == "map":
                index, size = int(unit.split("#", 1)[1]), max(int(node.spec.get("chunk_size") or 1), 1)
                items = list(args[0])[index * size : (index + 1) * size]
                chunk = [node.compensation, node.spec["mapper"], items, self.results[unit]]
                call_with_retries(app.tasks[CHUNK_COMP_TASK], chunk, {}, undo_context)
            else:
                call_with_retries(comp_task, [self.results.get(node.id), *args], kwargs, undo_context)
            self.comp[unit] = record.compensation_status = "compensated"
        except Exception as exc:
            self.comp[unit] = record.compensation_status = "compensation_failed"
            record.compensation_error = {"type": type(exc).__name__, "message": str(exc)}
