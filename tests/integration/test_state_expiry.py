"""A finished run leaves nothing in Redis once its hot state expired: the journal keeps the record.

The workers run with ``CANVASFLOW_STATE_EXPIRES=2``; every kind of run end is tried (succeeded
with a map step and an author errback, compensated, cancelled), and after the expiry no key of
the run is left in the state Redis while ``get_run`` still answers from the journal.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from celery import chain

from canvasflow.config.settings import get_settings
from canvasflow.workflows import Workflow, cancel, get_run, map_reduce, start
from canvasflow.workflows.runtime.context import runtime
from tests.faults.crashing import keyed
from tests.faults.outage import settings_env
from tests.faults.test_compensation_crashes import QUEUES
from tests.integration.saga import items, square, unsquare  # noqa: F401  (registers the steps)

pytestmark = [pytest.mark.redis, pytest.mark.worker]

TTL = 2


def keys_of(run_id: str) -> list[str]:
    rt = runtime()
    return sorted(k.decode() for k in rt.redis.scan_iter(match=f"{rt.settings.key_prefix}:{{{run_id}}}*"))


def wait_gone(run_id: str, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    left = keys_of(run_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = keys_of(run_id)
    return left


def test_finished_runs_leave_no_hot_state_once_it_expired(celery_worker_factory):
    modules = json.dumps([*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.faults.crashing"])
    with settings_env(state_expires=str(TTL), workflow_modules=modules) as env:  # cancel runs here
        celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env)
        _finish_each_way_and_check()


def _finish_each_way_and_check() -> None:
    tag, log = uuid.uuid4().hex[:8], f"expiry:{uuid.uuid4().hex}"

    def mapped():  # a map step (chunk keys) with an errback on the canvas (errback guard keys)
        sig = map_reduce(
            square.s(log=log), keyed.s(label="sum", log=log), items_from=items.s(6, log=log), chunk_size=2
        )
        return sig.on_error(keyed.si(label="never", log=log))

    ok = start(Workflow(f"t.expiry.ok.{tag}", "1", build=mapped).name).wait(60)
    failed = start(
        Workflow(
            f"t.expiry.fail.{tag}",
            "1",
            build=lambda: chain(keyed.s(label="a", log=log), keyed.s(label="b", fail=True, log=log)),
        ).name
    ).wait(60)
    slow = start(
        Workflow(f"t.expiry.cancel.{tag}", "1", build=lambda: keyed.s(label="c", sleep=1.0, log=log)).name
    )
    cancelled = cancel(slow.id).wait(30)
    assert (ok.status, failed.status, cancelled.status) == ("succeeded", "compensated", "cancelled")

    for record in (ok, failed, cancelled):
        assert wait_gone(record.id, timeout=TTL + 10) == [], f"{record.status} run left state in Redis"
        assert get_run(record.id).status == record.status  # the journal still has the run


def declared(capability: str) -> str:
    """CANVASFLOW_CAPABILITIES with ``capability`` added: a run whose step waits on a queue no
    worker consumes yet is refused unless its capability is declared (workers/routing/known.py)."""
    return json.dumps([*get_settings().capabilities, capability])


def test_a_run_the_sweep_suspected_leaves_no_suspicions_behind(celery_worker_factory):
    """The recovery sweep records its suspicions of a step waiting in a queue nobody consumes
    (``<run>:suspect``); once the run finished and its hot state expired, they are gone too."""
    from canvasflow.workflows.runs.sweep import Sweeper
    from tests.integration.fusion_steps import OTHER_CAPABILITY, elsewhere

    with settings_env(state_expires=str(TTL), capabilities=declared(OTHER_CAPABILITY)) as env:
        wf = Workflow(f"t.expiry.suspect.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(elsewhere.s()))
        run = start(wf.name)
        rt = runtime()
        Sweeper(rt).sweep()  # its step waits on cap.<other>, which no worker consumes yet
        assert rt.redis.exists(rt.state.key(run.id, "suspect"))
        # no control queue: no sweep of its own that would clear the suspicion (a busy fleet's lags)
        celery_worker_factory(queues=[f"cap.{OTHER_CAPABILITY}"], concurrency=1, extra_env=env)
        record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert wait_gone(record.id, timeout=TTL + 10) == [], "the sweep's suspicions outlived the run"


def test_a_suspicion_written_after_the_run_finished_expires_with_the_run(celery_worker_factory):
    """The race the bench's memory part found: a sweep reads a run, the run finishes and its keys
    get their expiry, then the sweep writes its suspicions. They must not outlive the run (a plain
    HSET + EXPIRE gave them ``result_expires``, a day)."""
    from canvasflow.workflows.runtime.active import note_suspicions
    from tests.integration.fusion_steps import OTHER_CAPABILITY, elsewhere

    with settings_env(state_expires=str(TTL), capabilities=declared(OTHER_CAPABILITY)) as env:
        wf = Workflow(f"t.expiry.late.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(elsewhere.s()))
        run = start(wf.name)
        rt = runtime()
        celery_worker_factory(queues=[f"cap.{OTHER_CAPABILITY}"], concurrency=1, extra_env=env)
        assert run.wait(60).status == "succeeded"
        meta = rt.state.key(run.id, "meta")
        deadline = time.monotonic() + 10  # the run is journaled a moment before its keys get a TTL
        while rt.redis.pttl(meta) == -1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rt.redis.pttl(meta) != -1  # finished: its keys expire (-2: gone already)
        note_suspicions(rt, run.id, {"0.elsewhere": time.time()})  # the late write of a lagging sweep
        assert not rt.redis.exists(rt.state.key(run.id, "suspect"))
        p = rt.redis.pipeline(transaction=False)
        note_suspicions(rt, run.id, {"0.elsewhere": time.time()}, pipe=p)  # the sweep's form
        p.execute()
        assert not rt.redis.exists(rt.state.key(run.id, "suspect"))
    assert wait_gone(run.id, timeout=TTL + 10) == []
    # a run whose state is gone gets a suspicion only when the sweep notes the loss itself
    lost = uuid.uuid4().hex
    note_suspicions(rt, lost, {"x": 1.0})
    assert not rt.redis.exists(rt.state.key(lost, "suspect"))
    note_suspicions(rt, lost, {"__rebuild__": 1.0}, when_lost=True)
    assert rt.redis.ttl(rt.state.key(lost, "suspect")) > TTL * 100
    rt.redis.delete(rt.state.key(lost, "suspect"))
