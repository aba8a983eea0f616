"""The canvas compiler: results flow as Celery passes them; errbacks reach what Celery documents."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from canvasflow.config.celery_app import app
from canvasflow.config.errors import DefinitionError, InputError
from canvasflow.workers.demo import add, echo, mul, xsum
from canvasflow.workflows.authoring.patterns import map_reduce
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph, resolve


def compiled(canvas):
    return compile_canvas(canvas, app)


def simulate(graph: StepGraph, impl: dict) -> object:
    """Run a graph in process, in dependency order, to check the data flow alone."""
    results: dict = {}
    while len(results) < len(graph.steps):
        for sid in graph.ready(set(results)):
            node = graph.steps[sid]
            args = [resolve(a, results) for a in node.args]
            kwargs = {k: resolve(v, results) for k, v in node.kwargs.items()}
            results[sid] = impl[node.task](*args, **kwargs)
    return resolve(graph.result, results)


IMPL = {
    "demo.add": lambda x, y=0: x + y,
    "demo.mul": lambda x, y: x * y,
    "demo.xsum": lambda v: sum(v),
    "demo.echo": lambda *a: list(a),
}


def test_chain_passes_previous_result_as_first_argument():
    g = compiled(chain(add.s(1, 2), mul.s(10), add.s(5)))
    assert [n.deps for n in g.steps.values()] == [[], ["0.add"], ["1.mul"]]
    assert simulate(g, IMPL) == 35


def test_group_result_is_list_in_written_order_with_nested_groups_spliced():
    g = compiled(group(add.s(1, 1), group(add.s(2, 2), add.s(3, 3)), add.s(4, 4)))
    assert simulate(g, IMPL) == [2, 4, 6, 8]
    assert all(not n.deps for n in g.steps.values())


def test_chord_body_gets_header_results_in_order_even_with_nested_group():
    # Celery 5.7 hands the body [4, 2, 6] here (nested group reversed); the documented order is kept.
    g = compiled(chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)], echo.s()))
    assert simulate(g, IMPL) == [[2, 4, 6]]
    body = g.steps["b.echo"]
    assert sorted(body.deps) == ["h0.add", "h1.add", "h2.add"]


def test_immutable_step_ignores_previous_result_but_still_waits_for_it():
    g = compiled(chain(add.s(1, 1), add.si(10, 10)))
    second = g.steps["1.add"]
    assert second.deps == ["0.add"]
    assert simulate(g, IMPL) == 20


def test_one_member_group_in_a_chain_is_that_member_as_in_celery():
    g = compiled(chain(add.s(1, 1), group(add.s(5))))
    assert simulate(g, IMPL) == 7


def test_chain_ending_in_group_returns_the_list():
    g = compiled(chain(add.s(1, 1), group(add.s(1), add.s(2))))
    assert simulate(g, IMPL) == [3, 4]


def test_chord_inside_group_inside_chain():
    canvas = chain(add.s(1, 1), group(chord([add.s(1), add.s(2)], xsum.s()), mul.s(3)), echo.s())
    assert simulate(compiled(canvas), IMPL) == [[7, 6]]


def test_step_ids_are_stable_and_derived_from_place():
    canvas = chain(add.s(1, 1), chord([add.s(1), mul.s(2)], xsum.s()))
    first, second = compiled(canvas), compiled(canvas)
    assert list(first.steps) == list(second.steps)
    assert list(first.steps) == ["0.add", "1.h0.add", "1.h1.mul", "1.b.xsum"]


def test_graph_round_trips_through_json():
    g = compiled(chord([add.s(1, 1), add.s(2, 2)], xsum.s()))
    again = StepGraph.from_json(g.to_json())
    assert again.to_json() == g.to_json()
    assert again.successors("h0.add") == ["b.xsum"]


def test_steps_are_routed_to_their_capability_queue():
    g = compiled(chain(add.s(1, 1), add.s(2).set(queue="cap.special")))
    assert g.steps["0.add"].options["queue"] == "cap.demo"
    assert g.steps["1.add"].options["queue"] == "cap.special"


def test_errback_on_chord_body_is_reached_from_the_header():
    c = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    c.link_error(echo.si("failed"))
    (eb,) = compiled(c).errbacks
    assert sorted(eb.scope) == ["b.xsum", "h0.add", "h1.add"]


def test_errback_on_a_chain_of_two_groups_is_reached_from_the_first_group():
    # Celery makes this chain a chord whose body is a group: the errback sits on the body's members
    c = chain(group(add.s(1, 1), add.s(2, 2)), group(add.s(3), add.s(4)))
    c.link_error(echo.si("failed"))
    (eb,) = compiled(c).errbacks
    assert sorted(eb.scope) == ["b.0.add", "b.1.add", "h0.add", "h1.add"]


def test_empty_group_compiles_to_no_step_and_an_empty_list():
    graph = compiled(group())
    assert graph.steps == {}
    assert resolve(graph.result, {}) == []


def test_errback_cloned_onto_group_members_is_one_errback():
    g = group(add.s(1, 1), add.s(2, 2))
    g.link_error(echo.si("failed"))
    (eb,) = compiled(g).errbacks
    assert sorted(eb.scope) == ["0.add", "1.add"]


def test_errback_on_a_chain_covers_every_step():
    c = chain(add.s(1, 1), add.s(2)).on_error(echo.si("x"))
    (eb,) = compiled(c).errbacks
    assert sorted(eb.scope) == ["0.add", "1.add"]


def test_link_callback_becomes_a_step_fed_by_its_parent():
    sig = add.s(1, 1)
    sig.link(mul.s(3))
    g = compiled(sig)
    cb = g.steps["link0.mul"]
    assert cb.deps == ["add"]
    assert simulate(g, IMPL) == 2  # the callback is not part of the result


def test_non_json_argument_is_refused():
    with pytest.raises(InputError, match="not JSON"):
        compiled(add.s(object(), 1))


def test_plain_celery_task_is_refused_with_the_fix():
    @app.task(name="tests.plain_task")
    def plain(x):  # pragma: no cover - never run
        return x

    with pytest.raises(DefinitionError, match="decorate it with @step"):
        compiled(chain(add.s(1, 1), plain.s()))


def test_map_reduce_compiles_to_one_dynamic_map_step():
    g = compiled(map_reduce(mul.s(2), xsum.s(), items_from=echo.s(1, 2, 3), chunk_size=2))
    kinds = [(n.id, n.kind) for n in g.steps.values()]
    assert kinds == [("0.echo", "task"), ("1.map", "map"), ("2.xsum", "task")]
    assert g.steps["1.map"].spec["chunk_size"] == 2
    assert g.steps["1.map"].options["queue"] == "cap.demo"


def test_errback_copied_onto_chord_header_by_celery_setting_is_still_one_errback(monkeypatch):
    monkeypatch.setitem(app.conf, "task_allow_error_cb_on_chord_header", True)
    c = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    c.link_error(echo.s())
    (eb,) = compiled(c).errbacks
    assert sorted(eb.scope) == ["b.xsum", "h0.add", "h1.add"]
    assert not eb.signature.get("immutable")


def test_step_deadlines_from_the_canvas_become_graph_options_and_celery_time_limits():
    graph = compiled(chain(add.s(1, 1).set(schedule_to_start=5), add.s(2).set(start_to_close=3)))
    assert graph.options["deadlines"] == {
        "0.add": {"schedule_to_start": 5.0},
        "1.add": {"start_to_close": 3.0},
    }
    assert graph.steps["1.add"].options["soft_time_limit"] == 3.0
    assert graph.steps["1.add"].options["time_limit"] > 3.0
    assert "soft_time_limit" not in graph.steps["0.add"].options
    assert StepGraph.from_json(graph.to_json()).options == graph.options


def test_a_bad_deadline_is_refused():
    with pytest.raises(DefinitionError, match="schedule_to_start must be a positive number"):
        compiled(add.s(1, 1).set(schedule_to_start=-1))
