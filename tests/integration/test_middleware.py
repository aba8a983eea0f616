"""Telemetry middleware around real workers: every hook, in order, for a run that fails and
compensates; a middleware that raises in every hook breaks nothing."""

from __future__ import annotations

import json

import pytest
from celery import chain

from canvasflow.workflows.telemetry.registry import add_middleware, remove_middleware
from tests.harness.plugin import StartWorker
from tests.harness.workers import WorkerProcess
from tests.integration.sagacheck import assert_rolled_back, new_log, run_saga, step_of
from tests.integration.telemetry_probe import PROBE, Raiser, Recorder, recorded

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def _worker_with(factory: StartWorker, cls: str) -> WorkerProcess:
    spec = json.dumps([f"tests.integration.telemetry_probe:{cls}"])
    return factory(extra_env={"CANVASFLOW_MIDDLEWARE": spec})


@pytest.fixture
def here():
    """Middleware in this (the client's) process too: run start happens here."""
    added: list = []

    def add(mw):
        added.append(add_middleware(mw))
        return mw

    yield add
    for mw in added:
        remove_middleware(mw)


def test_hooks_in_order_for_a_run_that_fails_and_compensates(celery_worker_factory, here):
    _worker_with(celery_worker_factory, "Recorder")
    here(Recorder())
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), s("b"), s("c", fail=True)))
    assert record.status == "compensated"
    assert assert_rolled_back(record, log) == ["b", "a"]
    a, b, c = (st.step_id for st in sorted(record.steps, key=lambda st: st.step_id))
    seen = recorded(record.id)
    assert all(r["by"] == "recorder" for r in seen)
    calls = [(r["hook"], r["event"].get("step_id")) for r in seen]
    assert calls == [
        ("on_run_start", None),
        ("on_step_dispatch", a),
        ("on_step_start", a),
        ("on_step_success", a),
        ("on_step_dispatch", b),
        ("on_step_start", b),
        ("on_step_success", b),
        ("on_step_dispatch", c),
        ("on_step_start", c),
        ("on_step_failure", c),
        ("on_compensation_start", b),
        ("on_compensation_success", b),
        ("on_compensation_start", a),
        ("on_compensation_success", a),
        ("on_run_finish", None),
    ], calls
    by_hook = {(r["hook"], r["event"].get("step_id")): r["event"] for r in seen}
    finish = by_hook[("on_run_finish", None)]
    assert finish["status"] == "compensated" and finish["duration"] > 0
    failure = by_hook[("on_step_failure", c)]
    assert failure["error"]["type"] == "RuntimeError"
    assert "c failed on purpose" in failure["error"]["traceback"]
    assert failure["worker"] and failure["queue"] == "cap.demo" and failure["capability"] == "demo"
    started = by_hook[("on_step_start", a)]
    assert started["carrier"] == {PROBE: f"{record.id}/{a}"}  # sent with the message, handed back
    assert started["attempt"] == 1 and started["task"] == "saga.act"
    success = by_hook[("on_step_success", b)]
    assert success["duration"] >= 0 and success["carrier"] == {PROBE: f"{record.id}/{b}"}
    comp = by_hook[("on_compensation_success", a)]
    assert comp["task"] == "saga.undo_act" and comp["idempotency_key"] == f"{record.id}:{a}:undo"


def test_a_middleware_that_raises_breaks_no_run(celery_worker_factory, here):
    _worker_with(celery_worker_factory, "Raiser")
    here(Raiser())
    log = new_log()
    s = step_of(log)
    ok = run_saga(lambda: chain(s("x"), s("y")))
    assert ok.status == "succeeded" and ok.result == "y"
    hooks = {r["hook"] for r in recorded(ok.id)}
    assert {"on_run_start", "on_step_start", "on_step_success", "on_run_finish"} <= hooks  # it was called

    log = new_log()
    s = step_of(log)
    failing = run_saga(lambda: chain(s("p"), s("q", fail=True)))
    assert failing.status == "compensated"
    assert assert_rolled_back(failing, log) == ["p"]
    hooks = {r["hook"] for r in recorded(failing.id)}
    assert {"on_step_failure", "on_compensation_start", "on_compensation_success", "on_run_finish"} <= hooks
