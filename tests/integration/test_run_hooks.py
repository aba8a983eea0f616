"""Run hooks across a resume: one on_run_start and one on_run_finish per generation."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import chain

from canvasflow.workers.demo import add, gate, open_gate
from canvasflow.workflows import Workflow, resume, start
from canvasflow.workflows.telemetry.registry import add_middleware, remove_middleware
from tests.integration.telemetry_probe import Recorder, recorded
from tests.integration.test_progress import MODULES, PROBE

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def run_hooks(run_id: str) -> list[tuple[str, int, str]]:
    return [
        (r["hook"], r["event"]["generation"], r["event"]["status"])
        for r in recorded(run_id)
        if r["hook"] in ("on_run_start", "on_run_finish")
    ]


def test_each_generation_starts_and_finishes_once(celery_worker_factory):
    celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES, "CANVASFLOW_MIDDLEWARE": PROBE})
    here = add_middleware(Recorder())  # starts and resumes happen in this process
    try:
        name = uuid.uuid4().hex[:8]
        wf = Workflow(f"t.hooks.{name}", "1", build=lambda: chain(add.s(1, 1), gate.s(name)))
        failed = start(wf.name).wait(30)
        assert failed.status == "failed"
        open_gate(name)
        done = resume(failed.id).wait(30)
        assert done.status == "succeeded"
    finally:
        remove_middleware(here)
    expected = [
        ("on_run_start", 1, "running"),
        ("on_run_finish", 1, "failed"),
        ("on_run_start", 2, "running"),
        ("on_run_finish", 2, "succeeded"),
    ]
    # the journal says succeeded a moment before the worker's on_run_finish is recorded: wait for it
    deadline = time.monotonic() + 15
    while (runs := run_hooks(done.id)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runs == expected
    finish = [r["event"] for r in recorded(done.id) if r["hook"] == "on_run_finish"]
    assert finish[0]["error"]["type"] == "RuntimeError" and finish[0]["workflow"] == wf.name
    assert finish[1]["error"] is None and finish[1]["duration"] >= finish[0]["duration"]
    failures = [r["event"] for r in recorded(done.id) if r["hook"] == "on_step_failure"]
    assert [(f["step_id"], f["generation"]) for f in failures] == [("1.gate", 1)]
    assert f"gate {name} is closed" in failures[0]["error"]["traceback"]
