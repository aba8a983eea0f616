"""The DAG form: dependencies follow from references; bad graphs are refused at definition."""

from __future__ import annotations

import pytest

from canvasflow.config.errors import DefinitionError
from canvasflow.workers.demo import add, echo, mul
from canvasflow.workflows import Workflow, input, result, value


def test_independent_steps_have_no_dependencies_and_joins_wait_for_both():
    wf = Workflow(
        "t.dag.parallel",
        "1",
        register=False,
        steps={
            "a": add.s(input("x"), value(1)),
            "b": mul.s(input("x"), 3),
            "c": echo.s(result("a"), result("b")),
        },
    )
    g = wf.compile(wf.validate({"x": 2}))
    assert g.steps["a"].deps == [] and g.steps["b"].deps == []
    assert g.steps["c"].deps == ["a", "b"]
    assert g.steps["a"].args == [{"v": 2}, {"v": 1}]
    assert g.result == {"r": "c"}


def test_result_path_and_nested_references():
    wf = Workflow(
        "t.dag.path",
        "1",
        register=False,
        steps={
            "a": echo.s(1, 2),
            "b": echo.s([result("a", 0), {"k": result("a", 1)}]),
        },
    )
    g = wf.compile({})
    assert g.steps["b"].args == [{"l": [{"r": "a", "p": [0]}, {"d": {"k": {"r": "a", "p": [1]}}}]}]


def test_cycle_is_refused_naming_it():
    with pytest.raises(DefinitionError) as err:
        Workflow(
            "t.dag.cycle",
            "1",
            register=False,
            steps={
                "a": add.s(result("c"), 1),
                "b": add.s(result("a"), 1),
                "c": add.s(result("b"), 1),
            },
        )
    assert "cycle: a -> c -> b -> a" in str(err.value)


def test_every_problem_is_listed_at_once():
    from pydantic import BaseModel

    class In(BaseModel):
        x: int

    with pytest.raises(DefinitionError) as err:
        Workflow(
            "t.dag.bad",
            "1",
            register=False,
            inputs=In,
            returns="nope",
            steps={
                "a": add.s(result("ghost"), input("y")),
                "b": add.s(result("b"), 1),
            },
        )
    problems = err.value.problems
    assert "step 'a': result('ghost') names no step" in problems
    assert "step 'a': input('y') is not an input of t.dag.bad" in problems
    assert "returns='nope' names no step" in problems
    assert "cycle: b -> b" in problems
    assert "for 4 reasons" in str(err.value)


def test_several_sinks_make_a_dict_result():
    wf = Workflow("t.dag.sinks", "1", register=False, steps={"a": add.s(1, 1), "b": add.s(2, 2)})
    assert wf.compile({}).result == {"d": {"a": {"r": "a"}, "b": {"r": "b"}}}


def test_step_deadlines_apply_in_the_dag_form_too():
    from canvasflow.workers.demo import add
    from canvasflow.workflows.authoring.dag import Dag

    dag = Dag("t.dag.deadlines", {"a": add.s(1, 1).set(schedule_to_start=2), "b": add.s(result("a"), 1)})
    graph = dag.compile({}, lambda _: None, lambda _: None)
    assert graph.options == {"deadlines": {"a": {"schedule_to_start": 2.0}}}
