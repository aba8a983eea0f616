"""A finished run says what happened: nothing compensated reads ``failed``, steps that never
ran read ``skipped``, and each journal event carries the time it happened."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from celery import chain, group

from canvasflow.workflows import get_run
from canvasflow.workflows.runtime.context import runtime
from tests.integration.saga import effects
from tests.integration.sagacheck import assert_rolled_back, new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_run_failing_at_its_first_step_ends_failed_and_the_rest_reads_skipped(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a", fail=True), s("b"), group(s("c"), s("d"))))
    assert record.status == "failed"
    assert record.error["type"] == "RuntimeError"
    assert effects(log) == ["fail:a"]
    assert {st.step_id: st.status for st in record.steps} == {
        "0.act": "failed",
        "1.act": "skipped",
        "2.0.act": "skipped",
        "2.1.act": "skipped",
    }
    assert all(st.compensation_status is None for st in record.steps)
    assert get_run(record.id).status == "failed"  # what `canvasflow status` shows
    events = [e["event"] for e in runtime().store.events(record.id)]
    assert "run.compensated" not in events and events[-1] == "run.failed"


def test_steps_after_a_failure_read_skipped_and_the_completed_ones_compensated(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), s("b", fail=True), s("c"), s("d")))
    assert record.status == "compensated"
    assert_rolled_back(record, log)
    assert [st.status for st in record.steps] == ["succeeded", "failed", "skipped", "skipped"]


def test_journal_events_carry_the_time_they_happened_not_their_batch(celery_worker_factory):
    # a long journal interval: all three steps complete within one batch of each process
    celery_worker_factory(extra_env={"CANVASFLOW_JOURNAL_INTERVAL": "3"}, concurrency=1)
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), s("b", sleep=0.6), s("c", sleep=0.6)))
    assert record.status == "succeeded"
    at = {
        e["step_id"]: datetime.fromisoformat(e["at"])
        for e in runtime().store.events(record.id)
        if e["event"] == "step.succeeded"
    }
    a, b, c = (at[f"{i}.act"] for i in range(3))
    assert (b - a).total_seconds() >= 0.5 and (c - b).total_seconds() >= 0.5, at
    for st in record.steps:  # each event at (about) its step's finish, not at the batch's write
        assert st.finished_at is not None
        finished = st.finished_at.replace(tzinfo=UTC)  # SQLite keeps no offset; times are UTC
        assert abs((at[st.step_id] - finished).total_seconds()) < 0.5, (st.step_id, at, finished)
