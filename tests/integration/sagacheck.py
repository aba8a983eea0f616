"""Checks shared by the saga tests: what a user of a saga engine would verify."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from canvasflow.workflows import Workflow, history, start
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.store.records import RunRecord
from tests.integration.saga import act, effects


def new_log() -> str:
    return f"saga-log:{uuid.uuid4().hex}"


def step_of(log: str) -> Callable[..., Any]:
    def make(label: str, **kw: Any) -> Any:
        return act.s(label=label, log=log, **kw)

    return make


def run_saga(build: Callable[[], Any], timeout: float = 60, **wf_options: Any) -> RunRecord:
    wf = Workflow(f"t.saga.{uuid.uuid4().hex[:8]}", "1", build=build, **wf_options)
    return start(wf.name).wait(timeout)


def labels(graph: StepGraph) -> dict[str, str]:
    return {sid: n.kwargs["label"]["v"] for sid, n in graph.steps.items() if "label" in n.kwargs}


def ran_in(record: RunRecord) -> dict[str, str]:
    """Step id -> the task id of the message whose delivery ran the step's last attempt: its own,
    or for a fused or carried step the delivery it ran in (the journal's history keeps it)."""
    out = {st.step_id: st.task_id for st in record.steps if st.task_id}
    for ev in history(record.id):
        if ev.step_id in out and ev.event in ("step.succeeded", "step.failed", "step.synced"):
            out[ev.step_id] = ev.data.get("delivery") or out[ev.step_id]
    return out


def end_status(log: str) -> str:
    """How a failed saga ends: ``compensated`` when some step completed (and so was undone),
    ``failed`` when none did (nothing was compensated)."""
    return "compensated" if any(e.startswith("do:") for e in effects(log)) else "failed"


def assert_rolled_back(record: RunRecord, log: str) -> list[str]:
    """Every completed step undone exactly once, nothing else undone, newest first along
    every dependency path; the journal agrees. Returns the undo order."""
    entries = effects(log)
    done = [e.split(":", 1)[1] for e in entries if e.startswith("do:")]
    undone = [e.split(":", 1)[1] for e in entries if e.startswith("undo:")]
    assert len(undone) == len(set(undone)), f"compensated twice: {entries}"
    assert sorted(undone) == sorted(done), f"completed {done} but compensated {undone}"
    graph = StepGraph.from_json(record.graph)
    by_label = labels(graph)
    sid_of = {v: k for k, v in by_label.items()}
    for label in undone:
        for ancestor in graph.ancestors(sid_of[label]):
            if by_label.get(ancestor) in undone:
                assert undone.index(label) < undone.index(by_label[ancestor]), (
                    f"{by_label[ancestor]} undone before its descendant {label}: {undone}"
                )
    for s in record.steps:
        label = by_label.get(s.step_id)
        if label is None:
            continue
        expected = "compensated" if label in done else None
        assert s.compensation_status == expected, (s.step_id, s.status, s.compensation_status)
        if label not in done:
            assert s.status != "succeeded"
    return undone


def finished(run_id: str, timeout: float = 60) -> RunRecord:
    """The run once terminal (``Run.wait`` also returns while it waits for a signal)."""
    import time

    from canvasflow.workflows import get_run
    from canvasflow.workflows.store.records import TERMINAL

    deadline = time.monotonic() + timeout
    while (record := get_run(run_id)).status not in TERMINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {record.status}"
        time.sleep(0.1)
    return record
