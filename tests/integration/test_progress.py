"""Progress a step reports: visible through get_run and `status --json` while it runs and after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import chain

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workflows import Workflow, get_run, map_reduce, start
from tests.integration.observed_steps import gate_key, pages
from tests.integration.saga import items, square, total
from tests.integration.telemetry_probe import recorded

pytestmark = [pytest.mark.redis, pytest.mark.worker]
MODULES = json.dumps(
    [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.observed_steps"]
)
PROBE = json.dumps(["tests.integration.telemetry_probe:Recorder"])


def _until(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_progress_while_the_step_runs_and_after(celery_worker_factory):
    celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES, "CANVASFLOW_MIDDLEWARE": PROBE})
    gate = uuid.uuid4().hex[:8]
    wf = Workflow(f"t.progress.{gate}", "1", build=lambda: chain(pages.s(10, gate)))
    run = start(wf.name)
    r = state_client(get_settings().redis_state_url)
    _until("the step to report", lambda: r.exists(gate_key(f"{gate}:reported")))

    running = get_run(run.id)
    assert running.status == "running"
    step = running.step("0.pages")
    assert step.status == "running"
    assert step.progress["done"] == 3 and step.progress["total"] == 10 and step.progress["note"] == "pages"
    assert abs(step.progress["at"] - time.time()) < 60
    cli = [sys.executable, "-m", "canvasflow.workflows.cli", "status", run.id, "--json"]
    shown = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert shown["steps"][0]["progress"]["done"] == 3

    r.set(gate_key(gate), 1, ex=600)
    done = run.wait(30)
    assert done.status == "succeeded" and done.result == 10
    assert done.step("0.pages").progress["done"] == 10  # the last report, after the step finished
    reports = [r["extra"][:2] for r in recorded(run.id) if r["hook"] == "on_step_progress"]
    assert reports == [[3, 10], [10, 10]]  # on_step_progress, in order


def test_a_map_step_shows_chunks_done_of_total(worker):
    log = f"progress-log:{uuid.uuid4().hex}"
    wf = Workflow(
        f"t.progress.map.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: map_reduce(
            square.s(log=log), total.s(log=log), items_from=items.s(7, log=log), chunk_size=2
        ),
    )
    record = start(wf.name).wait(60)
    assert record.status == "succeeded"
    (mapped,) = [s for s in record.steps if s.kind == "map"]
    assert mapped.progress == {"done": 4, "total": 4, "note": "chunks", "at": None}  # 7 items in chunks of 2
