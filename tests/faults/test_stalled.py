"""A run with no progress for a while: `canvasflow runs --stalled` lists it, `resume` takes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import chain

from canvasflow import ResumeRefused
from canvasflow.workflows import Workflow, resume, start
from canvasflow.workflows.runtime.wire import task_id_for
from tests.faults.outage import MODULES, settings_env
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES
from tests.faults.test_lost_message import lose

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

NO_SWEEP = {"CANVASFLOW_SWEEP_INTERVAL": "100000", "CANVASFLOW_WORKFLOW_MODULES": MODULES}


def test_a_stalled_run_is_listed_and_resumed(redis_url, celery_worker_factory):
    counter = f"counter:{uuid.uuid4().hex}"
    steps = [tick.s(label=x, counter=counter, counter_url=redis_url) for x in ("a", "b")]
    name = Workflow(f"t.stalled.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(*steps)).name
    run = start(name)
    lose("cap.demo", task_id_for(run.id, "0.tick", 1))  # nothing will ever run it (no sweep here)
    # no control queue: no sweep thread (a sweep would find the lost step and send it again)
    celery_worker_factory(queues=QUEUES[:2], concurrency=1, extra_env=NO_SWEEP)

    with pytest.raises(ResumeRefused, match="made progress"):
        resume(run.id)  # running, and not stalled for CANVASFLOW_STALLED_AFTER (300 s) yet

    time.sleep(2.5)
    cli = [sys.executable, "-m", "canvasflow.workflows.cli", "runs", "--stalled", "--for", "2", "--json"]
    out = subprocess.run(cli, env={**os.environ}, capture_output=True, text=True, timeout=60)
    listed = {r["id"]: r for r in json.loads(out.stdout)}
    assert run.id in listed and listed[run.id]["idle_seconds"] >= 2, out.stdout + out.stderr
    assert listed[run.id]["status"] == "running"

    with settings_env(stalled_after="2"):
        resume(run.id)
        record = run.wait(45)
    assert record.status == "succeeded" and record.generation == 2
    assert counts(redis_url, counter) == {"a": 1, "b": 1}
