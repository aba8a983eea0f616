"""Redis (broker and state) going away mid-run: every run still ends.

Each test runs its own redis-server (tests/faults/outage.py), so stopping it touches nobody
else; the step bodies count their executions in the session's Redis, which stays up."""

from __future__ import annotations

import uuid

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import PrivateRedis, redis_env, settings_env, wait_all_terminal
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

# fast liveness so a test takes seconds; the visibility timeout stays at its default hour, so no
# message comes back by the Redis transport's own restore: what finishes the runs is the sweep
FAST = {
    "visibility_timeout": "3600",
    "heartbeat_interval": "1",
    "heartbeat_ttl": "4",
    "sweep_interval": "1",
    "queued_grace": "4",
}


def chain_of_ticks(steps: int, counter: str, counter_url: str, sleep: float) -> str:
    def build() -> object:
        return chain(
            *(
                tick.s(label=f"s{i}", counter=counter, counter_url=counter_url, sleep=sleep)
                for i in range(steps)
            )
        )

    return Workflow(f"t.outage.{uuid.uuid4().hex[:8]}", "1", build=build).name


def any_step_running(run_ids: list[str]) -> bool:
    rt = runtime()
    return any("running" in rt.state.step_states(r).values() for r in run_ids)


@pytest.mark.parametrize(
    ("persistence", "down"),
    [("aof", 5), ("aof", 15), ("rdb", 5), ("rdb", 15)],
    ids=["appendonly-5s", "appendonly-15s", "snapshot-5s", "snapshot-15s"],
)
def test_redis_shut_down_mid_run_every_run_ends(
    tmp_path, redis_url, celery_worker_factory, persistence, down
):
    server = PrivateRedis(tmp_path / "redis", persistence).start()
    try:
        with settings_env(**redis_env(server.url()), **FAST) as env:
            celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
            counter = f"counter:{uuid.uuid4().hex}"
            wf = chain_of_ticks(6, counter, redis_url, sleep=0.4)
            runs = [start(wf).id for _ in range(4)]
            wait_for(lambda: any_step_running(runs), timeout=20)

            server.restart_after(down)

            records = wait_all_terminal(lambda r: runtime().store.get_run(r), runs, timeout=120)
            for record in records.values():
                assert record.status in ("succeeded", "failed", "compensated"), (record.id, record.status)
                if record.status == "succeeded":
                    assert record.result == "s5"
                    assert all(s.status == "succeeded" for s in record.steps), record.steps
                else:
                    assert record.error, f"{record.id} ended {record.status} with no reason journaled"
            ran = counts(redis_url, counter)
            assert ran.get("s5", 0) >= sum(r.status == "succeeded" for r in records.values())
    finally:
        server.stop()
