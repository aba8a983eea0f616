"""Property: for random canvases and a random failing step, every completed step is
compensated exactly once, no step that did not complete is compensated, and along every
dependency path the newer step is undone first. Runs through a real worker."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from celery import chain, chord, group
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.sagacheck import assert_rolled_back, end_status, new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]

Spec = Any  # "leaf" | ("chain" | "group", [Spec]) | ("chord", [Spec], Spec)

specs = st.recursive(
    st.just("leaf"),
    lambda inner: st.one_of(
        st.tuples(st.just("chain"), st.lists(inner, min_size=2, max_size=3)),
        st.tuples(st.just("group"), st.lists(inner, min_size=2, max_size=3)),
        st.tuples(st.just("chord"), st.lists(inner, min_size=1, max_size=3), inner),
    ),
    max_leaves=7,
)


def count_leaves(spec: Spec) -> int:
    if spec == "leaf":
        return 1
    return sum(count_leaves(s) for s in spec[1]) + (count_leaves(spec[2]) if spec[0] == "chord" else 0)


def materialize(spec: Spec, log: str, failing: int) -> Any:
    make, counter = step_of(log), itertools.count()

    def build(s: Spec) -> Any:
        if s == "leaf":
            i = next(counter)
            return make(f"s{i}", fail=i == failing)
        kind, parts = s[0], [build(p) for p in s[1]]
        if kind == "chain":
            return chain(*parts)
        if kind == "group":
            return group(*parts)
        return chord(parts, build(s[2]))

    return build(spec)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_canvas_random_failure_rolls_back_exactly_once(worker, data):
    spec = data.draw(specs, label="canvas")
    failing = data.draw(st.integers(0, count_leaves(spec) - 1), label="failing leaf")
    log = new_log()
    record = run_saga(lambda: materialize(spec, log, failing), timeout=60)
    assert record.status == end_status(log), (spec, failing, record.error)
    assert_rolled_back(record, log)
