"""The journal database going away while runs finish: no record dropped, SQL catches up.

PostgreSQL is reached through a TCP proxy on a free port (tests/faults/outage.py) that the test
cuts and restores: the machine's PostgreSQL keeps serving everyone else meanwhile."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
from celery import chain

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.outage import MODULES, TcpProxy, settings_env, wait_all_terminal
from tests.faults.steps import counts, tick
from tests.faults.test_killed_workers import QUEUES, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.worker, pytest.mark.faults]

FAST = {"heartbeat_interval": "1", "heartbeat_ttl": "4", "sweep_interval": "1", "startup_retry": "1"}


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"))


@pytest.fixture
def pg_proxy(postgres_url):
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield proxy, through(proxy, postgres_url)
    proxy.close()


def test_database_refusing_connections_for_15s_while_runs_finish(pg_proxy, redis_url, celery_worker_factory):
    proxy, url = pg_proxy
    with settings_env(database_url=url, workflow_modules=MODULES, **FAST) as env:
        celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
        counter = f"counter:{uuid.uuid4().hex}"
        steps = [tick.s(label=f"s{i}", counter=counter, counter_url=redis_url, sleep=0.3) for i in range(4)]
        name = Workflow(f"t.pgdown.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(*steps)).name
        runs = [start(name).id for _ in range(5)]
        rt = runtime()
        wait_for(lambda: any("succeeded" in rt.state.step_states(r).values() for r in runs), timeout=30)

        proxy.cut()
        cut_at = time.monotonic()
        # the runs end in Redis while the journal cannot be written
        wait_for(lambda: all(rt.state.status(r) == "succeeded" for r in runs), timeout=14)
        ended_by = datetime.now(UTC)
        time.sleep(max(0.0, 15 - (time.monotonic() - cut_at)))
        proxy.restore()
        restored_at = datetime.now(UTC)

        records = wait_all_terminal(lambda r: runtime().store.get_run(r), runs, timeout=60)
        for run_id, record in records.items():
            assert record.status == "succeeded" == rt.state.status(run_id)
            assert record.result == "s3"
            # finished_at is when the last step completed, not when the journal caught up
            last_step = max(s.finished_at for s in record.steps if s.finished_at)
            assert record.finished_at is not None
            assert last_step - timedelta(seconds=0.5) <= record.finished_at <= ended_by, (run_id, record)
            assert record.finished_at < restored_at - timedelta(seconds=5)
            ended = [e for e in rt.store.events(run_id) if e["event"] == "run.succeeded"]
            assert len(ended) == 1 and ended[0]["at"] == record.finished_at.isoformat()
            live = rt.state.step_states(run_id)
            results = rt.state.results(run_id, list(live))
            for s in record.steps:
                assert s.status == live[s.step_id] == "succeeded", (run_id, s.step_id, s.status)
                assert s.result == results[s.step_id]
                assert s.worker and s.finished_at
            events = {e["step_id"] for e in rt.store.events(run_id) if e["event"] == "step.succeeded"}
            assert events == {s.step_id for s in record.steps}, "a step's journal record was dropped"
        assert counts(redis_url, counter) == {f"s{i}": 5 for i in range(4)}  # nothing ran twice


def test_a_worker_whose_journal_database_is_down_waits_and_says_why_before_reporting_ready(
    pg_proxy, celery_worker_factory
):
    proxy, url = pg_proxy
    proxy.cut()
    with settings_env(database_url=url, workflow_modules=MODULES, **FAST) as env:
        w = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=env, ready_timeout=None)
        wait_for(lambda: "journal database unreachable" in w.read_log(), timeout=30)
        assert not w.ping(timeout=2.0), "ready (taking steps) while its journal database is down"
        assert w.alive

        proxy.restore()
        w.wait_ready(45)
        assert "Signal handler" not in w.read_log()  # no warm-up that raised and then went on


def test_journal_writer_holds_at_most_max_pending_records_while_the_database_is_down_and_loses_none(
    pg_proxy,
):
    from canvasflow.workflows.runtime.journal import JournalWriter
    from canvasflow.workflows.store.sql import store_for

    proxy, url = pg_proxy
    store = store_for(url)
    run_id = uuid.uuid4().hex
    names = [f"s{i}" for i in range(150)]
    steps = [{"step_id": n, "task": "faults.tick"} for n in names]
    store.create_run(run_id=run_id, workflow="t.writer", version="1", inputs={}, graph={}, steps=steps)
    writer = JournalWriter(store, 0.01, max_pending=100, retry_max=0.2)
    proxy.cut()

    def produce() -> None:
        for n in names:
            writer.record_step(run_id, n, "step.succeeded", status="succeeded", result=n)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(3)
    assert producer.is_alive(), "recorded past the limit while the database was down"
    assert writer.pending == 100

    proxy.restore()
    producer.join(30)
    assert not producer.is_alive()
    wait_for(lambda: writer.pending == 0, timeout=30)
    record = store.get_run(run_id)
    assert {s.step_id: (s.status, s.result) for s in record.steps} == {n: ("succeeded", n) for n in names}


def test_a_run_failing_while_the_database_is_down_still_compensates_and_journals_why(
    pg_proxy, redis_url, celery_worker_factory
):
    from tests.integration.saga import effects
    from tests.integration.sagacheck import new_log, step_of

    proxy, url = pg_proxy
    with settings_env(database_url=url, workflow_modules=MODULES, **FAST) as env:
        celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
        log = new_log()
        s = step_of(log)
        name = Workflow(
            f"t.pgfail.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(s("a"), s("b", fail=True, sleep=2))
        ).name
        run = start(name)
        rt = runtime()
        wait_for(lambda: rt.state.step_states(run.id).get("1.act") == "running", timeout=30)
        proxy.cut()
        wait_for(lambda: rt.state.status(run.id) in ("compensating", "compensated"), timeout=14)
        wait_for(lambda: rt.state.status(run.id) == "compensated", timeout=6)
        compensated_by = datetime.now(UTC)
        time.sleep(8)
        proxy.restore()

        record = wait_all_terminal(lambda r: runtime().store.get_run(r), [run.id], timeout=60)[run.id]
        assert record.status == "compensated", (record.status, record.error)
        assert record.error and record.error["type"] == "RuntimeError" and record.error["step"] == "1.act"
        assert record.step("1.act").status == "failed" and record.step("1.act").error
        assert record.step("0.act").compensation_status == "compensated"
        assert effects(log).count("undo:a") == 1
        # finished_at is when the rollback ended (during the cut), not when the journal caught up
        assert record.finished_at is not None and record.finished_at <= compensated_by
