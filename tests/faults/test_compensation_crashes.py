"""Faults in the rollback: compensations run at least once, and no crash strands a run.

Each test kills a process at an exact point (a pool process in a compensation's body, a
whole worker, or a kill point inside the rollback: see tests/faults/crashing.py) and checks
what a user of a saga checks: the run ends ``compensated``, every completed step's effect
was undone exactly once (the compensations use their idempotency key), and a body that ran
again saw the same key.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain, group

from canvasflow.workflows import Workflow, compensate, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.crashing import arm, keyed, keyed_once
from tests.faults.test_killed_workers import wait_for
from tests.integration.saga import effects

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]


def worker_env(killpoints: bool = False) -> dict[str, str]:
    modules = [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.faults.crashing"]
    env = {"CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules)}
    if killpoints:
        env["CF_TEST_KILLPOINTS"] = "1"
    return env


def new_log() -> str:
    return f"crash-log:{uuid.uuid4().hex}"


def workflow(build: Callable[[], Any]) -> str:
    return Workflow(f"t.crash.{uuid.uuid4().hex[:8]}", "1", build=build).name


def keys_of(log: str, kind: str, label: str) -> list[str]:
    prefix = f"{kind}:{label}:"
    return [k[len(prefix) :] for k in effects(f"{log}:keys") if k.startswith(prefix)]


def compensation_pid(log: str, label: str) -> int:
    started = wait_for(lambda: [e for e in effects(f"{log}:started") if e.startswith(f"{label}:")])
    return int(started[0].rsplit(":", 1)[1])


def test_compensation_killed_midway_runs_again_with_the_same_key(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=worker_env())
    log = new_log()
    k = dict(log=log)
    run = start(
        workflow(lambda: chain(keyed.s(label="a", undo_sleep=3.0, **k), keyed.s(label="b", fail=True, **k)))
    )
    os.kill(compensation_pid(log, "a"), signal.SIGKILL)  # after its effect, before it returns

    record = run.wait(60)
    assert record.status == "compensated", record.error
    assert record.step("0.keyed").compensation_status == "compensated"
    assert effects(log) == ["do:a", "undo:a"]  # the effect of the undo happened once
    undo_keys = keys_of(log, "undo", "a")
    assert len(undo_keys) == 2 and undo_keys[0] == undo_keys[1] == f"{run.id}:0.keyed:undo"


def test_whole_worker_killed_midway_through_a_compensation_the_next_worker_runs_it(celery_worker_factory):
    """With the Redis broker's default visibility timeout (an hour) the killed worker's message
    would come back only then: the sweep finds the unit running without a lease and publishes
    it again."""
    env = {**worker_env(), "CANVASFLOW_VISIBILITY_TIMEOUT": "3600"}
    first = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=env)
    log = new_log()
    k = dict(log=log)
    run = start(
        workflow(lambda: chain(keyed.s(label="a", undo_sleep=3.0, **k), keyed.s(label="b", fail=True, **k)))
    )
    compensation_pid(log, "a")
    first.kill_group(signal.SIGKILL)
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)

    record = run.wait(90)
    assert record.status == "compensated", record.error
    assert effects(log) == ["do:a", "undo:a"]
    assert len(set(keys_of(log, "undo", "a"))) == 1 and len(keys_of(log, "undo", "a")) >= 2


def test_at_most_once_compensation_interrupted_is_recorded_not_run_again(celery_worker_factory):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=worker_env())
    log = new_log()
    k = dict(log=log)
    run = start(
        workflow(
            lambda: chain(keyed_once.s(label="a", undo_sleep=3.0, **k), keyed.s(label="b", fail=True, **k))
        )
    )
    os.kill(compensation_pid(log, "a"), signal.SIGKILL)  # before its effect

    record = run.wait(60)
    assert record.status == "compensation_failed"
    step = record.step("0.keyed_once")
    assert step.compensation_status == "compensation_failed"
    assert step.compensation_error["type"] == "Interrupted"
    assert "at_most_once" in step.compensation_error["message"]
    assert effects(log) == ["do:a"]

    assert compensate(run.id).wait(60).status == "compensated"  # the operator retries on purpose
    assert effects(log) == ["do:a", "undo:a"]


def test_step_that_applied_its_effect_and_died_during_the_rollback_is_compensated(celery_worker_factory):
    """Its redelivery arrives after the run moved to compensating: it runs to completion
    (the key keeps its effect single) and is compensated, rather than skipped and forgotten."""
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=worker_env())
    log = new_log()
    k = dict(log=log)
    run = start(
        workflow(
            lambda: chain(
                keyed.s(label="a", **k),
                group(
                    keyed.s(label="b", die_once_when="compensating", **k),
                    keyed.s(label="c", fail=True, sleep=0.3, **k),
                ),
            )
        )
    )
    record = run.wait(60)
    assert record.status == "compensated", record.error
    entries = effects(log)
    assert sorted(entries) == ["do:a", "do:b", "undo:a", "undo:b"], entries
    assert entries.index("undo:b") < entries.index("undo:a")  # newest first along the path
    assert len(set(keys_of(log, "do", "b"))) == 1  # the redelivered body saw the same key
    assert record.step("1.0.keyed").attempts == 2


@pytest.mark.parametrize("point", ["before_publish", "before_close"])
def test_process_killed_inside_the_rollback_does_not_strand_the_run(celery_worker_factory, point):
    """``before_publish``: a unit marked dispatched whose message never left.
    ``before_close``: the last compensation wrote its state, the run was not closed yet."""
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=worker_env(killpoints=True))
    log = new_log()
    k = dict(log=log)
    name = workflow(
        lambda: chain(keyed.s(label="a", **k), keyed.s(label="b", **k), keyed.s(label="c", fail=True, **k))
    )
    run_id = uuid.uuid4().hex
    arm(run_id, point)
    from canvasflow.workflows.runs.lifecycle import start_run

    start_run(name, {}, run_id=run_id)
    from canvasflow.workflows.client import Run

    record = Run(run_id).wait(60)
    assert record.status == "compensated", (record.status, record.error)
    assert effects(log) == ["do:a", "do:b", "undo:b", "undo:a"]
    assert not runtime().redis.exists(f"killpoint:{run_id}:{point}")  # the kill point was reached
