"""The runtime against a real Redis, real worker processes and the SQL journal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from celery import chain, chord

from canvasflow.config.celery_app import app
from canvasflow.config.errors import DefinitionError, InputError, ResumeRefused, RunNotFound, WorkflowNotFound
from canvasflow.workers.demo import add, echo, gate, open_gate, sleep
from canvasflow.workflows import (
    Workflow,
    cancel,
    get_run,
    list_runs,
    result,
    resume,
    signal,
    start,
    wait_signal,
)
from canvasflow.workflows.authoring.definition import registry

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def run_count() -> int:
    return len(list_runs(limit=100_000))


def test_dag_runs_independent_steps_in_parallel(celery_worker_factory):
    from tests.integration import timing

    celery_worker_factory(queues=["cap.timing"], concurrency=2)
    wf = Workflow(
        unique("t.dag.sleep"),
        "1",
        steps={
            "a": timing.sleep.s(1.0),
            "b": timing.sleep.s(1.0),
            "joined": timing.collect.s(result("a"), result("b")),
        },
    )
    start(wf.name).wait(30)  # warm up: connections, imports
    began = time.monotonic()
    record = start(wf.name).wait(30)
    wall = time.monotonic() - began
    assert record.status == "succeeded"
    assert record.result == [1.0, 1.0]
    # the critical path is 1 s; one after the other it would be 2 s
    assert wall < 1.7, f"took {wall:.2f}s: the independent steps did not overlap"
    a, b = record.step("a"), record.step("b")
    assert a.started_at < b.finished_at and b.started_at < a.finished_at


def test_unknown_workflow_creates_no_run(worker):
    before = run_count()
    with pytest.raises(WorkflowNotFound, match=r"no workflow named 'no\.such\.flow'"):
        start("no.such.flow", {})
    assert run_count() == before


def _typed_build(x: int, y: int = 1):
    return add.s(x, y)


def test_invalid_inputs_create_no_run(worker):
    wf = Workflow(unique("t.inputs"), "1", build=_typed_build)
    before = run_count()
    with pytest.raises(InputError, match="x: Input should be a valid integer"):
        start(wf.name, {"x": "not a number"})
    with pytest.raises(InputError, match="inputs are not JSON"):
        start(wf.name, "{x: 1")
    assert run_count() == before


def test_non_json_argument_creates_no_run(worker):
    wf = Workflow(unique("t.nonjson"), "1", build=lambda: add.s({1, 2}, 1))
    before = run_count()
    with pytest.raises(InputError, match="is not JSON"):
        start(wf.name)
    assert run_count() == before


def test_cycle_is_refused_before_any_run(worker):
    with pytest.raises(DefinitionError, match="cycle"):
        Workflow(unique("t.cycle"), "1", steps={"a": add.s(result("b"), 1), "b": add.s(result("a"), 1)})


def test_unknown_run_id_is_a_clear_error(worker):
    with pytest.raises(RunNotFound, match="no run with id 'nope'"):
        get_run("nope")


def test_start_by_plain_celery_message_without_step_code(worker):
    """A backend service needs only the task name and JSON."""
    reply = app.send_task(
        "canvasflow.start", kwargs={"workflow": "order_total", "inputs": {"order_id": 3}}
    ).get(timeout=30)
    record = get_run(reply["run_id"])
    from canvasflow.workflows.client import Run

    assert Run(record.id).wait(30).result == "order 3: total 54"
    from canvasflow.config.errors import StartRefused

    with pytest.raises(StartRefused, match=r"InputError: .*order_id"):
        app.send_task(
            "canvasflow.start", kwargs={"workflow": "order_total", "inputs": {"order_id": "x"}}
        ).get(timeout=30)


def test_failed_run_resumes_from_where_it_stopped(worker):
    name = unique("gate")
    wf = Workflow(
        unique("t.resume"), "1", build=lambda: chain(add.s(1, 1), add.s(10), gate.s(name), echo.s())
    )
    failed = start(wf.name).wait(30)
    assert failed.status == "failed"
    assert failed.error["type"] == "RuntimeError" and failed.error["step"] == "2.gate"
    assert [s.status for s in failed.steps] == ["succeeded", "succeeded", "failed", "skipped"]
    gate_step = failed.step("2.gate")
    assert gate_step.attempts == 1 and gate_step.worker and gate_step.started_at and gate_step.finished_at
    from canvasflow.workflows.runtime.context import runtime

    failures = [e for e in runtime().store.events(failed.id) if e["event"] == "step.failed"]
    assert [e["step_id"] for e in failures] == ["2.gate"]
    open_gate(name)
    done = resume(failed.id).wait(30)
    assert done.status == "succeeded"
    assert done.result == [12]
    assert done.step("0.add").attempts == 1 and done.step("1.add").attempts == 1
    assert done.generation == 2
    with pytest.raises(ResumeRefused, match="is succeeded; only failed or cancelled"):
        resume(done.id)


def test_resume_under_another_definition_version_is_refused(worker):
    name = unique("t.version")
    Workflow(name, "1", build=lambda: chain(add.s(1, 1), gate.s(unique("never"))))
    failed = start(name).wait(30)
    assert failed.status == "failed"
    registry._by_name[name].pop("1")  # a new deployment ships only version 2
    Workflow(name, "2", build=lambda: add.s(1, 1))
    with pytest.raises(ResumeRefused, match=r"started under .* version 1"):
        resume(failed.id)
    assert get_run(failed.id).status == "failed"


def test_cancel_stops_dispatching(worker):
    wf = Workflow(unique("t.cancel"), "1", build=lambda: chain(sleep.s(1.0), add.s(1), add.s(2)))
    run = start(wf.name)
    time.sleep(0.3)
    cancel(run.id)
    time.sleep(1.5)
    record = get_run(run.id)
    assert record.status == "cancelled"
    assert record.step("1.add").status == "skipped" and record.step("2.add").status == "skipped"


def test_run_waits_for_a_signal_and_continues_with_its_payload(worker):
    wf = Workflow(
        unique("t.signal"), "1", build=lambda: chain(add.s(1, 1), wait_signal("approved"), echo.s())
    )
    run = start(wf.name)
    waiting = run.wait(30)
    assert waiting.status == "waiting"
    signal(run.id, "approved", {"by": "ops"})
    assert run.wait(30).result == [{"by": "ops"}]


def test_sub_workflow_is_a_child_run(worker):
    """The child starts on a worker (which knows the definitions from its workflow modules)."""
    from tests.integration.flows import child, parent

    record = start(parent.name).wait(30)
    assert record.status == "succeeded", record.error
    assert record.result == [103]
    assert record.step("1.subworkflow").status == "succeeded"
    kids = [r for r in list_runs(workflow=child.name) if r.parent_run_id == record.id]
    assert len(kids) == 1 and kids[0].status == "succeeded" and kids[0].result == 103
    assert kids[0].parent_step == "1.subworkflow"


def test_failing_sub_workflow_fails_its_parent_step(worker):
    from tests.integration.flows import parent_of_failing

    record = start(parent_of_failing.name).wait(30)
    assert record.status == "failed"
    assert record.step("1.subworkflow").status == "failed"
    assert record.step("2.echo").status == "skipped"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_start_status_runs_graph(worker):
    out = cli("start", "order_total", "--input", '{"order_id": 5}', "--wait", "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "succeeded" and run["result"] == "order 5: total 54"
    status = json.loads(cli("status", run["id"], "--json").stdout)
    assert [s["status"] for s in status["steps"]] == ["succeeded"] * 7
    runs = json.loads(cli("runs", "--workflow", "order_total", "--json").stdout)
    assert run["id"] in [r["id"] for r in runs]
    graph = cli("graph", run["id"], "--format", "mermaid")
    assert graph.stdout.startswith("flowchart TD") and "[succeeded]" in graph.stdout
    dot = cli("graph", "order_total", "--format", "dot", "--input", '{"order_id": 1}')
    assert dot.stdout.startswith('digraph "order_total"') and "->" in dot.stdout


def test_cli_bad_input_is_one_clear_line(worker):
    out = cli("start", "order_total", "--input", "{not json")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: --input is not JSON")
    out = cli("status", "nope", "--json")
    assert json.loads(out.stdout)["type"] == "RunNotFound"


def test_failure_in_a_chord_nested_in_a_chord_header_ends_the_run(worker):
    """Celery 5.7 leaves the outer chord PENDING for good here; a run always ends."""
    from canvasflow.workers.demo import fail, xsum

    inner = chord([add.s(1, 1), fail.s()], xsum.s())
    wf = Workflow(unique("t.nested.fail"), "1", build=lambda: chord([inner, add.s(2, 2)], echo.s()))
    record = start(wf.name).wait(30)
    assert record.status == "failed"
    assert record.error["type"] == "RuntimeError" and record.error["step"] == "h0.h1.fail"
    assert record.step("b.echo").status == "skipped"


def test_a_step_returning_something_that_is_not_json_fails_clearly(worker):
    from tests.integration.saga import returns_set

    wf = Workflow(
        unique("t.nonjson.result"), "1", build=lambda: chain(add.s(1, 1), returns_set.s(), echo.s())
    )
    record = start(wf.name).wait(30)
    assert record.status == "failed"
    assert "returned a value that is not JSON" in record.error["message"]


def test_starting_a_run_records_its_definition_version(worker):
    from canvasflow.workflows.runtime.context import runtime

    wf = Workflow(unique("t.versioned"), "7", build=_typed_build)
    start(wf.name, {"x": 1}).wait(30)
    (definition,) = runtime().store.definitions(wf.name)
    assert definition["version"] == "7"
    assert definition["input_schema"]["required"] == ["x"]
