"""Fan-out bundles (workflows/runtime/bundles.py): which ready siblings share a message."""

from __future__ import annotations

import pytest
from celery import chord, group

from canvasflow.config.celery_app import app
from canvasflow.config.settings import get_settings
from canvasflow.workers.demo import add, echo
from canvasflow.workflows.runtime import bundles
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.wire import carried_ids, header_problem


def runtime_with(**settings: object) -> Runtime:
    return Runtime(app, get_settings().model_copy(update=settings))


def roots(canvas: object) -> tuple[object, list[str]]:
    graph = compile_canvas(canvas, app)
    return graph, graph.roots()


def test_a_wide_fan_out_travels_as_about_fanout_spread_messages():
    graph, ready = roots(chord([add.s(i, 1) for i in range(100)], echo.s()))
    planned = bundles.plan(runtime_with(fanout_spread=32, fuse_hops=16), graph, ready)

    assert len(planned) == 25  # 100 siblings in bundles of ceil(100 / 32) = 4
    carried = [sid for rest in planned.values() for sid in rest]
    assert sorted([*planned, *carried]) == sorted(ready)  # every sibling exactly once
    assert all(len(rest) == 3 for rest in planned.values())


def test_a_fan_out_under_twice_the_spread_is_not_bundled():
    graph, ready = roots(group(add.s(i, 1) for i in range(63)))
    assert bundles.plan(runtime_with(fanout_spread=32), graph, ready) == {}


def test_spread_zero_or_fusion_off_never_bundles():
    graph, ready = roots(group(add.s(i, 1) for i in range(200)))
    assert bundles.plan(runtime_with(fanout_spread=0), graph, ready) == {}
    assert bundles.plan(runtime_with(fuse_hops=0), graph, ready) == {}


def test_a_bundle_never_carries_more_than_fuse_hops_siblings():
    graph, ready = roots(group(add.s(i, 1) for i in range(1000)))
    planned = bundles.plan(runtime_with(fanout_spread=4, fuse_hops=7), graph, ready)
    assert max(len(rest) for rest in planned.values()) == 7


def test_steps_with_options_of_their_own_travel_alone():
    """A countdown, priority or explicit expiry is a message's business: no bundle."""
    members = [add.s(i, 1).set(countdown=1) for i in range(40)] + [add.s(i, 2) for i in range(40)]
    graph, ready = roots(group(members))
    planned = bundles.plan(runtime_with(fanout_spread=8), graph, ready)
    bundled = set(planned) | {sid for rest in planned.values() for sid in rest}
    assert bundled and all("countdown" not in graph.steps[sid].options for sid in bundled)
    assert len(bundled) == 40


def test_carried_ids_are_the_siblings_task_ids():
    header = {"run": "r1", "step": "0.add", "gen": 2, "then": ["1.add", "2.add"]}
    assert carried_ids(header) == ["r1-1.add-g2", "r1-2.add-g2"]
    assert carried_ids({"run": "r1", "step": "0.add", "gen": 2}) == []
    assert carried_ids("not a header") == []


@pytest.mark.parametrize("then", ["1.add", [1, 2], [""], ["x" * 201], ["s"] * 1001])
def test_a_malformed_then_field_is_refused(then):
    problem = header_problem({"run": "r1", "step": "0.add", "gen": 1, "then": then})
    assert problem is not None and "'then'" in problem
