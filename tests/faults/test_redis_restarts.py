"""Redis (broker, results and state on one appendonly server) restarted again and again while
steps run on three fleets: no worker process exits, and every run ends.

The first set-up that showed it: kombu's Redis channel, closed twice when the consumer drops a
lost connection, asked its already detached connection for its address and raised
AttributeError, which Celery treats as unrecoverable (docs/reliability.md, "Worker survives a
broker restart")."""

from __future__ import annotations

import random
import re
import time
import uuid
from functools import partial

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import PrivateRedis, redis_env, settings_env, wait_all_terminal
from tests.faults.steps import counts, flaky, tick
from tests.faults.test_killed_workers import wait_for
from tests.faults.test_redis_outage import any_step_running
from tests.harness.workers import WorkerProcess

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

FAST = {"heartbeat_interval": "1", "heartbeat_ttl": "4", "sweep_interval": "2"}
QUEUES = ["cap.demo", "canvasflow"]
CONTROL = [*QUEUES, "canvasflow.control"]
STEPS = 6


def slow_chain(counter: str, counter_url: str) -> str:
    def build() -> object:
        label = uuid.uuid4().hex[:8]
        steps = [
            tick.s(label=f"s{i}", counter=counter, counter_url=counter_url, sleep=random.uniform(1.0, 1.5))
            for i in range(STEPS)
        ]
        # a payment step on a flaky gateway: its retry waits in the worker with a countdown
        steps.insert(2, flaky.s(label=f"pay-{label}", counter=counter, counter_url=counter_url))
        return chain(*steps)

    return Workflow(f"t.restarts.{uuid.uuid4().hex[:8]}", "1", build=build).name


def retries_waiting(counter_url: str, counter: str) -> int:
    ran = counts(counter_url, counter)
    return sum(1 for k in ran if k.endswith(":attempts") and k.removesuffix(":attempts") not in ran)


def ready_to_cut(counter_url: str, counter: str, runs: list[str]) -> bool:
    return retries_waiting(counter_url, counter) >= 2 and any_step_running(runs)


def logged_about(workers: list[WorkerProcess], failure: str, lines: int = 30) -> str:
    """The workers' log lines that name a run named in ``failure`` (the last ``lines`` of each)."""
    ids = set(re.findall(r"'([0-9a-f]{32})': '", failure))
    out = []
    for w in workers:
        hits = [line for line in w.read_log().splitlines() if any(i in line for i in ids) or "sweep" in line]
        out.append(f"--- {w.hostname}: {len(hits)} lines on {sorted(ids)} or the sweep")
        out += hits[-lines:]
    return "\n".join(out)


def test_workers_outlive_repeated_redis_restarts_and_every_run_ends(
    tmp_path, redis_url, celery_worker_factory
):
    server = PrivateRedis(tmp_path / "redis", "aof").start()
    try:
        with settings_env(**redis_env(server.url()), **FAST) as env:
            workers = [
                celery_worker_factory(queues=CONTROL if i == 0 else QUEUES, concurrency=1, extra_env=env)
                for i in range(3)
            ]
            pids = {w.hostname: w.pid for w in workers}
            counter = f"counter:{uuid.uuid4().hex}"
            wf = slow_chain(counter, redis_url)
            runs: list[str] = []
            for down in (5, 15, 5):
                runs += [start(wf).id for _ in range(6)]
                # restart while payments wait for their retry (held by the workers, unacknowledged)
                # and other steps are in the middle of their bodies
                wait_for(partial(ready_to_cut, redis_url, counter, list(runs)), timeout=60)
                server.restart_after(down)
                time.sleep(3)  # the consumers notice and reconnect
                dead = {w.hostname: w.log_tail(30) for w in workers if not w.alive}
                assert not dead, f"workers exited after a {down}s Redis restart: {dead}"
                assert {w.hostname: w.pid for w in workers} == pids

            try:
                records = wait_all_terminal(lambda r: runtime().store.get_run(r), runs, timeout=180)
            except AssertionError as exc:  # say what the workers logged of the runs left behind
                raise AssertionError(f"{exc}\n{logged_about(workers, str(exc))}") from None
            assert {r.status for r in records.values()} == {"succeeded"}, {
                r.id: (r.status, r.error) for r in records.values() if r.status != "succeeded"
            }
            assert all(r.result == f"s{STEPS - 1}" for r in records.values())
            assert counts(redis_url, counter).get(f"s{STEPS - 1}", 0) >= len(runs)
            assert all(w.alive for w in workers)
    finally:
        server.stop()


def test_after_a_redis_restart_interrupted_steps_run_again_within_seconds(
    tmp_path, redis_url, celery_worker_factory
):
    """Default liveness and sweep settings (heartbeat 5 s, sweep 10 s, queued grace 60 s): the
    sweep runs as soon as Redis is back, and a step it proves gone does not wait out the grace."""
    server = PrivateRedis(tmp_path / "redis", "aof").start()
    sleep = 1.0
    try:
        with settings_env(**redis_env(server.url())) as env:
            workers = [
                celery_worker_factory(queues=CONTROL if i == 0 else QUEUES, concurrency=2, extra_env=env)
                for i in range(3)
            ]
            counter = f"counter:{uuid.uuid4().hex}"

            def build() -> object:
                return chain(
                    *(
                        tick.s(label=f"s{i}", counter=counter, counter_url=redis_url, sleep=sleep)
                        for i in range(STEPS)
                    )
                )

            wf = Workflow(f"t.recovery.{uuid.uuid4().hex[:8]}", "1", build=build).name
            runs = [start(wf).id for _ in range(6)]
            wait_for(
                lambda: sum("running" in runtime().state.step_states(r).values() for r in runs) >= 4,
                timeout=30,
            )
            time.sleep(0.3)
            states = {r: runtime().state.step_states(r) for r in runs}
            server.stop()
            time.sleep(5)
            server.start()
            back = time.time()

            records = wait_all_terminal(lambda r: runtime().store.get_run(r), runs, timeout=120)
            assert all(w.alive for w in workers)
            late: dict[str, float] = {}
            for run_id, record in records.items():
                assert record.status == "succeeded", (run_id, record.status, record.error)
                left = sum(1 for i in range(STEPS) if states[run_id].get(f"{i}.tick") != "succeeded")
                ended = record.finished_at.timestamp() - back
                late[run_id] = ended - left * sleep
                for sid, st in states[run_id].items():
                    if st == "running":  # interrupted by the outage: ran again within 10 s of it
                        again = record.step(sid).started_at.timestamp() - back
                        print(f"recovery: {sid} of {run_id} ran again {again:.1f}s after Redis was back")
                        assert again <= 10, f"{run_id} {sid} ran again {again:.1f}s after Redis was back"
            print(
                "recovery: runs ended beyond their remaining work by",
                sorted(round(v, 1) for v in late.values()),
            )
            assert max(late.values()) <= 15, f"runs ended late beyond their remaining work: {late}"
    finally:
        server.stop()
