"""Run state on a Redis Cluster (3 primaries, started by the harness) with real workers.

The broker, the result backend and the journal stay the session's; ``CANVASFLOW_STATE_URL``
is ``redis+cluster://...`` for this module (fixture ``cluster_state``). Each canvas shape, a
saga's rollback, a resume and a signal run to their end as on one server, every key of a run
sits in one slot, and runs spread over the primaries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import redis
from celery import chain, chord, group

from canvasflow.workers.beats import live_workers
from canvasflow.workers.demo import add, echo, gate, open_gate
from canvasflow.workflows import Workflow, get_run, map_reduce, resume, signal, start, wait_signal
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import RunRecord
from tests.integration.saga import items, square, total
from tests.integration.sagacheck import assert_rolled_back, new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("cluster_state")]

PARTS = {"meta", "graph", "st", "res", "deps", "left", "att", "info"}  # what every run has


def run(build, timeout: float = 60) -> RunRecord:  # type: ignore[no-untyped-def]
    wf = Workflow(f"t.cluster.{uuid.uuid4().hex[:8]}", "1", build=build)
    return start(wf.name).wait(timeout)


def keys_of(run_id: str) -> list[str]:
    """The run's keys, found by SCAN on every primary (redis-py's cluster scan_iter)."""
    rt = runtime()
    return sorted(k.decode() for k in rt.redis.scan_iter(match=f"{rt.settings.key_prefix}:{{{run_id}}}:*"))


def slots_of(run_id: str) -> set[int]:
    """``CLUSTER KEYSLOT`` of each of the run's keys, asked of the cluster."""
    return {int(runtime().redis.cluster_keyslot(k)) for k in keys_of(run_id)}  # type: ignore[attr-defined]


def test_the_state_is_on_the_cluster_and_the_worker_beats_there(worker, redis_url):
    rt = runtime()
    assert rt.settings.redis_state_url.startswith("redis+cluster://")
    assert type(rt.redis).__name__ == "RedisCluster"
    record = run(lambda: chain(add.s(1, 1), add.s(10), echo.s()))
    assert record.status == "succeeded", record.error
    assert record.result == [12]
    assert worker.hostname in live_workers(rt)  # heartbeats (a global key and an index) on the cluster
    plain = redis.Redis.from_url(redis_url)  # the session's own Redis holds broker and results only
    assert list(plain.scan_iter(match=f"{rt.settings.key_prefix}:{{{record.id}}}:*")) == []


def _two_adds(i: int):  # type: ignore[no-untyped-def]
    return lambda: chain(add.s(i, 1), add.s(1))


def test_a_runs_keys_share_one_slot_and_runs_spread_over_the_primaries(worker):
    flows = [Workflow(f"t.cluster.spread.{uuid.uuid4().hex[:8]}", "1", build=_two_adds(i)) for i in range(12)]
    runs = [start(wf.name) for wf in flows]  # in flight together
    records = [r.wait(60) for r in runs]
    assert [r.status for r in records] == ["succeeded"] * 12
    assert [r.result for r in records] == [i + 2 for i in range(12)]
    rt, primaries = runtime(), set()
    for r in records:
        keys = keys_of(r.id)
        assert {k.rsplit(":", 1)[1] for k in keys} >= PARTS, keys
        assert len(slots_of(r.id)) == 1, f"run {r.id} has keys in several slots: {keys}"
        primaries.add(rt.redis.get_node_from_key(keys[0]).name)  # type: ignore[attr-defined]
    assert len(primaries) >= 2, f"12 runs all on {primaries}: the hash tag does not spread runs"


def test_a_group(worker):
    record = run(lambda: group(add.s(i, i) for i in range(4)))
    assert record.status == "succeeded", record.error
    assert record.result == [0, 2, 4, 6]
    assert len(slots_of(record.id)) == 1


def test_a_chord_with_a_nested_group_in_its_header(worker):
    record = run(lambda: chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)], echo.s()))
    assert record.status == "succeeded", record.error
    assert record.result == [[2, 4, 6]]  # the header's results in the order written
    assert len(slots_of(record.id)) == 1


def test_a_map_reduce(worker):
    log = new_log()
    record = run(
        lambda: map_reduce(square.s(log=log), total.s(log=log), items_from=items.s(10, log=log), chunk_size=3)
    )
    assert record.status == "succeeded", record.error
    assert record.result == sum(i * i for i in range(10))
    keys = keys_of(record.id)
    assert any(":chunks:" in k for k in keys), keys  # the map step's chunk results, in the run's slot
    assert len(slots_of(record.id)) == 1


def test_a_failed_saga_compensates_each_completed_step_once(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(
        lambda: chain(s("pre"), chord([s("h0"), s("h1", fail=True), s("h2")], s("body")), s("post"))
    )
    assert record.status == "compensated", record.error
    undone = assert_rolled_back(record, log)  # each completed step undone once, newest first
    assert undone[-1] == "pre" and "h1" not in undone and "body" not in undone
    assert len(slots_of(record.id)) == 1  # the rollback's keys (comp, compclaim, ...) too


def test_a_failed_run_resumes_to_success(worker):
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    failed = run(lambda: chain(add.s(1, 1), add.s(10), gate.s(name), echo.s()))
    assert failed.status == "failed"
    assert failed.error["step"] == "2.gate"
    open_gate(name)
    done = resume(failed.id).wait(60)
    assert done.status == "succeeded", done.error
    assert done.result == [12] and done.generation == 2
    assert done.step("0.add").attempts == 1  # completed steps were not run again
    assert len(slots_of(done.id)) == 1


def test_a_run_waits_for_a_signal(worker):
    wf = Workflow(
        f"t.cluster.signal.{uuid.uuid4().hex[:8]}",
        "1",
        build=lambda: chain(add.s(1, 1), wait_signal("go"), echo.s()),
    )
    started = start(wf.name)
    assert started.wait(60).status == "waiting"
    signal(started.id, "go", {"by": "ops"})
    record = started.wait(60)
    assert record.status == "succeeded", record.error
    assert record.result == [{"by": "ops"}]
    waited = get_run(started.id).step("1.wait_signal")
    assert waited.status == "succeeded" and waited.result == {"by": "ops"}


def test_the_cli_refuses_a_malformed_cluster_url_in_one_line():
    env = {**os.environ, "CANVASFLOW_STATE_URL": "redis+cluster://127.0.0.1:7000/3"}
    command = [sys.executable, "-m", "canvasflow.workflows.cli", "runs"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: invalid settings: CANVASFLOW_STATE_URL: Value error, a Redis Cluster has database 0 only "
        "(the URL's path is '/3'): end it with /0 (got 'redis+cluster://127.0.0.1:7000/3')"
    ]
