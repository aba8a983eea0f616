"""Limits under load: 200 concurrent runs while malformed messages arrive at 10 per second.

Every run must succeed and every malformed message must be dead-lettered (acknowledged, the
worker serving on): bad input from one sender never costs another sender its run."""

from __future__ import annotations

import threading
import uuid

import pytest

from canvasflow.config.celery_app import app
from canvasflow.workflows.client import Run
from tests.harness.plugin import StartWorker
from tests.harness.workers import WorkerProcess
from tests.integration.badinput_steps import simple
from tests.integration.test_bad_input_wire import MODULES, celery_headers, deadletters, eventually, publish

pytestmark = [pytest.mark.redis, pytest.mark.worker]

RUNS, RATE = 200, 10.0


@pytest.fixture
def worker_for_load(celery_worker_factory: StartWorker) -> WorkerProcess:
    return celery_worker_factory(concurrency=2, extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES})


def _malformed(i: int) -> None:
    kind = i % 4
    if kind == 0:
        publish(b'[[1, 2], {}, {"callbacks"', "application/json", celery_headers())
    elif kind == 1:
        publish(b"[[1, 2], {}, {}]", "application/json", celery_headers("no.such.task"))
    elif kind == 2:
        ref = {"run": f"no-such-run-{uuid.uuid4().hex[:6]}", "step": "0.add", "gen": 1}
        app.send_task("demo.add", args=[1, 2], headers={"canvasflow": ref}, queue="cap.demo")
    else:
        app.send_task("demo.add", args=[1, 2], headers={"canvasflow": "not-an-object"}, queue="cap.demo")


@pytest.mark.timeout(420)
def test_two_hundred_runs_succeed_while_malformed_messages_arrive(worker_for_load: WorkerProcess) -> None:
    before = len(deadletters())
    stop, injected = threading.Event(), [0]

    def inject() -> None:
        while not stop.wait(1 / RATE):
            _malformed(injected[0])
            injected[0] += 1

    thread = threading.Thread(target=inject, daemon=True)
    thread.start()
    try:
        runs = [Run(app_run) for app_run in (_start(i) for i in range(RUNS))]
        records = [run.wait(240) for run in runs]
    finally:
        stop.set()
        thread.join(5)
    statuses = [r.status for r in records]
    assert statuses.count("succeeded") == RUNS, {s: statuses.count(s) for s in set(statuses)}
    assert all(r.result == [r.inputs["x"] + 2] for r in records)
    assert injected[0] >= 10, "the injector did not get going"

    def all_dead_lettered() -> bool:
        return len(deadletters()) - before >= injected[0]

    assert eventually(all_dead_lettered, 60), (injected[0], len(deadletters()) - before)
    assert worker_for_load.alive


def _start(i: int) -> str:
    from canvasflow.workflows import start

    return start(simple.name, {"x": i}).id
