"""History: every attempt of a run, in order, with its errors and tracebacks, across a resume."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime

import pytest
from celery import chain

from canvasflow import history
from canvasflow.config.errors import RunNotFound
from canvasflow.workers.demo import add, gate, open_gate
from canvasflow.workflows import Workflow, get_run, resume, start

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_a_failed_then_resumed_run_keeps_both_attempts(worker):
    name = uuid.uuid4().hex[:8]
    wf = Workflow(f"t.history.{name}", "1", build=lambda: chain(add.s(1, 1), gate.s(name)))
    failed = start(wf.name).wait(30)
    assert failed.status == "failed"
    first = failed.step("1.gate")
    open_gate(name)
    done = resume(failed.id).wait(30)
    assert done.status == "succeeded" and done.generation == 2

    events = history(done.id)
    stamps = [e.at for e in events]
    assert stamps == sorted(stamps)  # in the order they happened
    gate_events = [(e.event, e.generation) for e in events if e.step_id == "1.gate"]
    assert gate_events == [
        ("step.started", 1),
        ("step.failed", 1),
        ("step.reset", None),  # the resume
        ("step.started", 2),
        ("step.succeeded", 2),
    ]
    run_events = [e.event for e in events if e.step_id is None]
    assert run_events == ["run.created", "run.failed", "run.running", "run.resumed", "run.succeeded"]
    failure = next(e for e in events if e.event == "step.failed")
    assert failure.error["type"] == "RuntimeError" and failure.error["message"] == f"gate {name} is closed"
    assert "Traceback (most recent call last)" in failure.error["traceback"]
    assert 'raise RuntimeError(f"gate {name} is closed")' in failure.error["traceback"]  # the source line
    assert failure.worker == first.worker and failure.queue == "cap.demo"
    # the step of the resumed run: its journal row is the last attempt, its attempt log has both
    log = done.step("1.gate").attempt_log
    assert [(a["generation"], a["status"]) for a in log] == [(1, "failed"), (2, "succeeded")]
    first_start = datetime.fromisoformat(log[0]["started_at"]).replace(tzinfo=None)
    assert first_start == first.started_at.replace(tzinfo=None)  # the first attempt's start survives
    assert log[0]["error"]["type"] == "RuntimeError" and "Traceback" in log[0]["error"]["traceback"]
    assert log[1]["error"] is None
    assert datetime.fromisoformat(log[0]["finished_at"]) <= datetime.fromisoformat(log[1]["started_at"])
    assert done.step("0.add").attempt_log[0]["status"] == "succeeded"  # ran once, kept by the resume
    assert len(done.step("0.add").attempt_log) == 1

    cli = [sys.executable, "-m", "canvasflow.workflows.cli", "history", done.id]
    shown = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True).stdout)
    assert [(e["event"], e.get("step_id")) for e in shown] == [(e.event, e.step_id) for e in events]
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert f"RuntimeError: gate {name} is closed" in text and "step.failed  1.gate  gen=1" in text


def test_history_of_an_unknown_run(worker):
    with pytest.raises(RunNotFound):
        history("no-such-run")
    cli = [sys.executable, "-m", "canvasflow.workflows.cli", "history", "no-such-run", "--json"]
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2 and json.loads(out.stdout)["type"] == "RunNotFound"
    with pytest.raises(RunNotFound):
        get_run("no-such-run")


def test_a_retried_step_keeps_the_failed_try(celery_worker_factory):
    from tests.integration.observed_steps import flaky
    from tests.integration.telemetry_probe import recorded
    from tests.integration.test_progress import MODULES, PROBE

    celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES, "CANVASFLOW_MIDDLEWARE": PROBE})
    name = uuid.uuid4().hex[:8]
    wf = Workflow(f"t.history.retry.{name}", "1", build=lambda: chain(flaky.s(name)))
    record = start(wf.name).wait(30)
    assert record.status == "succeeded" and record.result == name
    log = record.step("0.flaky").attempt_log
    assert [(a["attempt"], a["status"]) for a in log] == [(1, "retrying"), (2, "succeeded")]
    assert log[0]["error"]["type"] == "ConnectionError" and "first try fails" in log[0]["error"]["traceback"]
    assert [e.event for e in history(record.id) if e.step_id] == [
        "step.started",
        "step.retrying",
        "step.started",
        "step.succeeded",
    ]
    seen = recorded(record.id)
    steps = [(r["hook"], r["event"]["attempt"]) for r in seen if r["hook"].startswith("on_step_")]
    assert [h for h in steps if h[0] != "on_step_dispatch"] == [
        ("on_step_start", 1),
        ("on_step_retry", 1),
        ("on_step_start", 2),
        ("on_step_success", 2),
    ]
    retry = next(r["event"] for r in seen if r["hook"] == "on_step_retry")
    assert retry["error"]["type"] == "ConnectionError" and 0 <= retry["retry_in"] <= 5
    assert [r["event"]["status"] for r in seen if r["hook"] == "on_run_finish"] == ["succeeded"]
