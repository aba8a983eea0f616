"""Two canvas shapes that used to misbehave: an empty group, and a chain of two groups
(Celery makes it a chord whose body is a group) with an errback on the canvas."""

from __future__ import annotations

import pytest
from celery import chain, group

from tests.integration.saga import effects, on_error
from tests.integration.sagacheck import new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_empty_group_succeeds_with_an_empty_list(worker):
    record = run_saga(lambda: group())
    assert record.status == "succeeded"
    assert record.result == []
    assert record.steps == []


def test_errback_on_a_chain_of_two_groups_is_reached_by_a_header_failure(worker):
    log = new_log()
    s = step_of(log)

    def build():
        canvas = chain(group(s("h0"), s("h1", fail=True)), group(s("b0"), s("b1")))
        canvas.link_error(on_error.s(log=log, label="canvas"))
        return canvas

    record = run_saga(build)
    assert record.status == "compensated"
    assert [e for e in effects(log) if e.startswith("errback:")] == ["errback:canvas"]
    assert "do:b0" not in effects(log) and "do:b1" not in effects(log)
