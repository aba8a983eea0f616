"""A worker host cut off from Redis by the network while its process lives on.

The host is a network namespace of the test's own (tests/harness/netns.py) joined by a veth pair;
its worker reaches the test's Redis (broker, results, state) on the pair's address and shares the
SQLite journal on disk. The link goes down for 30 s while that worker runs a step (or a
compensation), a worker outside takes the work over, and the link comes back before the cut-off
worker finishes: its late result is refused, the effect happened at most twice under one
idempotency key, and the run ended once. The cut-off worker runs the solo pool, where nothing
cancels its body when the broker goes quiet, so its late result does come (docs/reliability.md
says what differs with prefork).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import chain

from canvasflow.compensation.rollback import comp_states
from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import PrivateRedis, settings_env
from tests.faults.partition_steps import decline, effect, ledger_lines
from tests.faults.test_killed_workers import QUEUES, wait_for
from tests.faults.test_redis_outage import FAST
from tests.harness.netns import TestHost, partitioned_host
from tests.harness.plugin import ROOT, WORKFLOW_MODULES
from tests.harness.workers import WorkerProcess

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

CUT_S = 30.0
FIRST_SLEEP = CUT_S + 4  # the stranded delivery finishes a few seconds after the link is back
MODULES = json.dumps([*WORKFLOW_MODULES, "tests.faults.steps", "tests.faults.partition_steps"])


@dataclass
class Scene:
    """A run whose work waits on the cut-off host, and a worker outside ready to take it over."""

    host: TestHost
    cut_off: WorkerProcess
    outside: WorkerProcess
    run_id: str
    ledger: str


@contextlib.contextmanager
def scene(
    tmp_path: Path, start_worker: Any, build: Callable[[dict[str, str]], Any], busy: Callable[[str], bool]
) -> Iterator[Scene]:
    """A test host whose worker (the only one at first) runs the workflow ``build(ledger args)``
    until ``busy(run id)``; then a worker outside starts. Everything is removed afterwards."""
    with partitioned_host() as host:
        server = PrivateRedis(tmp_path / "redis", "none", also_on=(host.outer_ip,)).start()
        url = server.url()
        settings = {"broker_url": url, "result_backend": url, "state_url": url}
        settings |= {"database_url": f"sqlite:///{tmp_path / 'journal.db'}", "workflow_modules": MODULES}
        try:
            with settings_env(**settings, compensation_lease_ttl="3", **FAST) as env:
                inner = url.replace("127.0.0.1", host.outer_ip)  # the same Redis, through the link
                names = ("BROKER_URL", "RESULT_BACKEND", "STATE_URL")
                inner_env = {**env, **{f"CANVASFLOW_{n}": inner for n in names}}
                cut_off = host.worker(log_dir=tmp_path, cwd=ROOT, env=inner_env, queues=["cap.demo"])
                cut_off.wait_ready(60)
                ledger = str(tmp_path / "ledger")
                name = f"t.partition.{uuid.uuid4().hex[:8]}"
                Workflow(name, "1", build=lambda: build({"ledger": ledger}))
                run_id = start(name).id
                wait_for(lambda: busy(run_id), timeout=30)
                outside = start_worker(queues=QUEUES, concurrency=1, extra_env=env)
                yield Scene(host, cut_off, outside, run_id, ledger)
        finally:
            server.stop()


def _cut_while(host: TestHost, until: Callable[[], Any]) -> tuple[float, Any]:
    """Cut the host off for CUT_S seconds; returns when ``until`` first held (seconds after the
    cut) and what it returned, once the link is back."""
    host.cut()
    began = time.monotonic()
    try:
        value = wait_for(until, timeout=CUT_S - 2)
        took = time.monotonic() - began
        time.sleep(max(CUT_S - (time.monotonic() - began), 0))
    finally:
        host.heal()
    return took, value


def test_a_step_cut_off_runs_elsewhere_and_its_late_completion_is_refused(tmp_path, celery_worker_factory):
    def build(s: dict[str, str]) -> Any:
        return chain(
            effect.s(label="a", **s),
            effect.s(label="b", first_sleep=FIRST_SLEEP, **s),
            effect.s(label="c", **s),
        )

    with scene(tmp_path, celery_worker_factory, build, lambda r: step_state(r) == "running") as sc:
        rt = runtime()  # the one settings_env pointed at the test's Redis
        took, ended = _cut_while(sc.host, lambda: (r := rt.store.get_run(sc.run_id)) and r.terminal and r)
        assert ended.status == "succeeded" and ended.result == "c"
        # the stranded delivery finishes after the link is back, and its completion is refused
        wait_for(lambda: len(ledger_lines(sc.ledger, "do:b")) == 2, timeout=FIRST_SLEEP)
        # its completion reaches Redis and is refused, or fails on the connection the cut left
        # broken and the failure that follows is refused: either way nothing changes
        refused = wait_for(lambda: re.search(r"late (completion|failure) refused", sc.cut_off.read_log()), 15)

        record = rt.store.get_run(sc.run_id)
        assert (record.status, record.result, record.finished_at) == ("succeeded", "c", ended.finished_at)
        b = record.step("1.effect")
        assert (b.status, b.worker) == ("succeeded", sc.outside.hostname)
        _assert_twice_under_one_key(sc, "do:b")
        assert len(ledger_lines(sc.ledger, "do:a")) == len(ledger_lines(sc.ledger, "do:c")) == 1
        print(f"step: the run ended {took:.1f}s into the {CUT_S:g}s cut; {refused.group(0)}")


def test_a_compensation_whose_holder_is_cut_off_is_taken_over_and_its_late_result_fenced(
    tmp_path, celery_worker_factory
):
    def build(s: dict[str, str]) -> Any:
        return chain(
            effect.s(label="a", **s), effect.s(label="b", undo_first_sleep=FIRST_SLEEP, **s), decline.s()
        )

    busy = lambda r: comp_states(runtime(), r).get("1.effect") == "running"  # noqa: E731
    with scene(tmp_path, celery_worker_factory, build, busy) as sc:
        rt = runtime()  # the one settings_env pointed at the test's Redis
        took, ended = _cut_while(sc.host, lambda: (r := rt.store.get_run(sc.run_id)) and r.terminal and r)
        assert ended.status == "compensated", (ended.status, ended.error)
        wait_for(lambda: len(ledger_lines(sc.ledger, "undo:b")) == 2, timeout=FIRST_SLEEP)
        wait_for(lambda: "late compensation result refused" in sc.cut_off.read_log(), timeout=15)

        record = rt.store.get_run(sc.run_id)
        assert (record.status, record.finished_at) == ("compensated", ended.finished_at)
        undone = {s.step_id: s.compensation_status for s in record.steps if s.step_id.endswith("effect")}
        assert undone == {"0.effect": "compensated", "1.effect": "compensated"}
        _assert_twice_under_one_key(sc, "undo:b")
        assert len(ledger_lines(sc.ledger, "undo:a")) == 1
        print(f"compensation: the run ended {took:.1f}s into the {CUT_S:g}s cut; late result fenced")


def step_state(run_id: str) -> str | None:
    return runtime().state.step_states(run_id).get("1.effect")


def _assert_twice_under_one_key(sc: Scene, what: str) -> None:
    """The effect happened on both workers, under one idempotency key; the cut-off one lives."""
    rows = ledger_lines(sc.ledger, what)
    assert len(rows) == 2 and rows[0][0] == rows[1][0], rows
    assert {w for _, w, _ in rows} == {sc.outside.hostname, sc.cut_off.hostname}
    assert sc.cut_off.alive, sc.cut_off.log_tail()
