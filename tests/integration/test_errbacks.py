"""Errbacks the author attached run exactly once when a failure reaches them, wherever it
happens (Celery 5.7 misses header failures by default and doubles them with
``task_allow_error_cb_on_chord_header``)."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from tests.integration.saga import effects, on_error, on_error_old
from tests.integration.sagacheck import new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def errbacks(log: str) -> list[str]:
    return [e.split(":", 1)[1] for e in effects(log) if e.startswith("errback:")]


def test_errback_on_chord_fires_once_for_a_header_failure(worker):
    log = new_log()
    s = step_of(log)

    def build():
        c = chord([s("h0"), s("h1", fail=True), s("h2")], s("body"))
        c.link_error(on_error.s(log=log, label="chord"))
        return c

    record = run_saga(build)
    assert record.status == "compensated"
    assert errbacks(log) == ["chord"]


def test_errback_on_a_chord_nested_in_a_group_and_on_the_whole_canvas(worker):
    log = new_log()
    s = step_of(log)

    def build():
        inner = chord([s("a"), chain(s("b"), s("c", fail=True))], s("inner_body"))
        inner.link_error(on_error.s(log=log, label="inner"))
        return group(inner, s("d")).on_error(on_error_old.s(log=log, label="outer"))

    record = run_saga(build)
    assert record.status == "compensated"
    assert sorted(errbacks(log)) == ["inner", "outer"]


def test_errback_shared_by_group_members_fires_once_for_two_failures(worker):
    log = new_log()
    s = step_of(log)

    def build():
        return group(s("x", fail=True), s("y", fail=True)).on_error(on_error.s(log=log, label="g"))

    record = run_saga(build)
    assert record.status == "failed"  # nothing completed, so nothing was compensated
    assert errbacks(log) == ["g"]


def test_errback_not_reached_by_a_failure_elsewhere(worker):
    log = new_log()
    s = step_of(log)

    def build():
        ok_branch = chain(s("a"), s("b")).on_error(on_error.s(log=log, label="ok_branch"))
        return group(ok_branch, s("bad", fail=True))

    record = run_saga(build)
    assert record.status == "compensated"
    assert errbacks(log) == []
