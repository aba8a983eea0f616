"""Redis restarted without persistence mid-run: the journal rebuilds the runs' state.

``canvasflow recover`` (and the periodic sweep, which runs the same rebuild) finds the active runs
whose Redis state is gone; steps the journal holds as succeeded are kept with their results and
are not run again (each step counts its executions in the session's Redis, which stays up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import MODULES, PrivateRedis, redis_env, settings_env, wait_all_terminal
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

STEPS = 6


def journaled(run_id: str) -> set[str]:
    record = runtime().store.get_run(run_id)
    return {s.step_id for s in record.steps if s.status == "succeeded"} if record else set()


@pytest.mark.parametrize("by", ["cli", "sweep"])
def test_state_lost_mid_run_is_rebuilt_from_the_journal_and_completed_steps_do_not_run_again(
    tmp_path, redis_url, celery_worker_factory, by
):
    server = PrivateRedis(tmp_path / "redis", "none").start()
    sweep = "1" if by == "sweep" else "100000"  # the CLI test: nothing but `recover` repairs
    fast = {"heartbeat_interval": "1", "heartbeat_ttl": "4", "sweep_interval": sweep, "queued_grace": "4"}
    try:
        with settings_env(**redis_env(server.url()), visibility_timeout="3600", **fast) as env:
            celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)

            def build(counter: str) -> object:
                labels = [f"s{i}" for i in range(STEPS)]
                return chain(
                    *(tick.s(label=x, counter=counter, counter_url=redis_url, sleep=0.4) for x in labels)
                )

            name = Workflow(f"t.loss.{uuid.uuid4().hex[:8]}", "1", build=build).name
            counters = {
                start(name, {"counter": c}).id: c for c in (f"n:{uuid.uuid4().hex}" for _ in range(3))
            }
            runs = list(counters)
            wait_for(lambda: all(len(journaled(r)) >= 2 for r in runs), timeout=40)
            kept = {r: journaled(r) for r in runs}  # the journal's word just before the loss

            server.stop()  # SHUTDOWN NOSAVE: every run's Redis state and every queued message is gone
            server.start()
            assert runtime().state.status(runs[0]) is None

            if by == "cli":
                cli = [sys.executable, "-m", "canvasflow.workflows.cli", "recover", "--json"]
                out = subprocess.run(cli, env={**os.environ}, capture_output=True, text=True, timeout=60)
                assert out.returncode == 0, out.stderr
                assert set(json.loads(out.stdout)["rebuilt"]) >= set(runs)

            records = wait_all_terminal(lambda r: runtime().store.get_run(r), runs, timeout=90)
            for run_id, record in records.items():
                assert record.status == "succeeded", (run_id, record.status, record.error)
                assert record.result == f"s{STEPS - 1}" and record.generation == 2
                ran = counts(redis_url, counters[run_id])
                for step_id in kept[run_id]:
                    label = f"s{step_id.split('.')[0]}"
                    assert ran[label] == 1, f"{run_id}: {label} was journaled, yet ran {ran[label]} times"
                assert set(ran) == {f"s{i}" for i in range(STEPS)}
    finally:
        server.stop()


def test_recover_rebuilds_a_run_whose_redis_state_is_older_than_its_journal(redis_url, celery_worker_factory):
    """As after Redis came back from an old snapshot: it no longer knows a step the journal holds.

    Step b runs long enough that the recover CLI (seconds to start on a loaded machine) finds the
    run still in flight."""
    env = {"CANVASFLOW_SWEEP_INTERVAL": "100000", "CANVASFLOW_WORKFLOW_MODULES": MODULES}
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
    counter = f"n:{uuid.uuid4().hex}"
    steps = [
        tick.s(label=x, counter=counter, counter_url=redis_url, sleep=s) for x, s in (("a", 0), ("b", 10))
    ]
    run = start(Workflow(f"t.stale.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(*steps)).name)
    rt = runtime()
    wait_for(
        lambda: "0.tick" in journaled(run.id) and rt.state.step_states(run.id).get("1.tick") == "running"
    )
    rt.redis.hdel(rt.state.key(run.id, "st"), "0.tick")
    rt.redis.hdel(rt.state.key(run.id, "res"), "0.tick")

    cli = [sys.executable, "-m", "canvasflow.workflows.cli", "recover", "--json"]
    out = subprocess.run(cli, env={**os.environ}, capture_output=True, text=True, timeout=60)
    assert run.id in json.loads(out.stdout)["rebuilt"], out.stdout + out.stderr

    record = run.wait(45)
    assert record.status == "succeeded" and record.generation == 2 and record.result == "b"
    assert counts(redis_url, counter)["a"] == 1  # journaled: kept, not run again
