"""Moving a run to another version (runs/upgrade_plan.py): recorded journals of real runs
(tests/data/journals/versions) with the plan they must give, and small hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery import chain, group

from canvasflow.config.celery_app import app
from canvasflow.config.errors import InputError
from canvasflow.workers.demo import add, mul, xsum
from canvasflow.workflows.runs.upgrade_plan import plan_upgrade
from canvasflow.workflows.runtime import priorities
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph

RECORDED = sorted((Path(__file__).parents[1] / "data" / "journals" / "versions").glob("*.json"))


def plan(old, new, completed):
    return plan_upgrade(
        run_id="r1",
        workflow="w",
        from_version="1",
        to_version="2",
        status="failed",
        old=old,
        completed=completed,
        new=new,
    )


def graph(canvas) -> StepGraph:
    return compile_canvas(canvas, app)


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
def test_a_recorded_run_gives_the_expected_plan(path):
    case = json.loads(path.read_text())
    run = case["run"]
    p = plan_upgrade(
        run_id=run["id"],
        workflow=run["workflow"],
        from_version=run["version"],
        to_version=case["to"]["version"],
        status=run["status"],
        old=StepGraph.from_json(run["graph"]),
        completed={sid for sid, st in run["steps"].items() if st == "succeeded"},
        new=StepGraph.from_json(case["to"]["graph"]),
    )
    expect = case["expect"]
    assert p.compatible is expect["compatible"]
    assert (p.kept, p.rerun, p.added, p.skipped) == (
        expect["kept"],
        expect["rerun"],
        expect["added"],
        expect["skipped"],
    )
    assert [m.step_id for m in p.mismatches] == expect["mismatches"]


def test_the_same_definition_keeps_every_completed_step_and_runs_the_rest():
    g = graph(chain(add.s(1, 1), add.s(2), add.s(3)))
    p = plan(g, graph(chain(add.s(1, 1), add.s(2), add.s(3))), {"0.add", "1.add"})
    assert p.compatible and p.kept == ["0.add", "1.add"] and p.rerun == ["2.add"]
    assert p.added == [] and p.skipped == []


def test_a_step_appended_by_the_new_version_runs_and_a_dropped_unrun_one_is_skipped():
    old = graph(chain(add.s(1, 1), add.s(2), group(add.s(5), mul.s(2))))
    new = graph(chain(add.s(1, 1), add.s(2), add.s(7)))
    p = plan(old, new, {"0.add"})
    assert p.compatible
    assert p.kept == ["0.add"] and p.rerun == ["1.add"]
    assert p.added == ["2.add"] and p.skipped == ["2.0.add", "2.1.mul"]


def test_other_arguments_for_a_completed_step_refuse_the_move_and_name_it():
    old = graph(chain(add.s(1, 1), add.s(2), add.s(3)))
    new = graph(chain(add.s(1, 1), add.s(20), add.s(3)))
    p = plan(old, new, {"0.add", "1.add"})
    assert not p.compatible
    assert p.first_mismatch is not None and p.first_mismatch.step_id == "1.add"
    assert "other arguments" in p.first_mismatch.reason
    assert p.kept == ["0.add"] and p.rerun == ["1.add", "2.add"]


def test_other_arguments_for_a_step_that_did_not_complete_are_fine():
    old = graph(chain(add.s(1, 1), add.s(2), add.s(3)))
    new = graph(chain(add.s(1, 1), add.s(2), add.s(30)))
    p = plan(old, new, {"0.add", "1.add"})
    assert p.compatible and p.rerun == ["2.add"]


def test_another_task_or_a_missing_step_refuses_in_the_old_graphs_order():
    old = graph(chain(add.s(1, 1), add.s(2), add.s(3)))
    new = graph(chain(add.s(1, 1), add.s(2), mul.s(2)))  # ids carry the task's short name: 2.mul
    new.steps["1.add"].task = "billing.add"  # same short name, another task
    p = plan(old, new, {"0.add", "1.add", "2.add"})
    assert [m.step_id for m in p.mismatches] == ["1.add", "2.add"]
    assert "its task is billing.add in the new version, it ran demo.add" in p.mismatches[0].reason
    assert "the new version has no step with this id" in p.mismatches[1].reason
    assert p.kept == ["0.add"] and p.rerun == ["1.add"] and p.added == ["2.mul"]


def test_a_completed_step_cannot_be_kept_when_the_new_version_puts_an_unrun_step_before_it():
    old = graph(group(add.s(1, 1), add.s(2, 2)))
    new = graph(group(add.s(1, 1), add.s(2, 2)))
    new.steps["1.add"].deps.append("0.add")  # the new version orders the members
    p = plan(old, StepGraph.from_json(new.to_json()), {"1.add"})
    assert not p.compatible and p.first_mismatch.step_id == "1.add"
    assert "completed before 0.add" in p.first_mismatch.reason


def test_a_join_keeps_its_result_when_its_header_maps():
    old = graph(chain(group(add.s(1, 1), add.s(2, 2)), xsum.s(), add.s(1)))
    new = graph(chain(group(add.s(1, 1), add.s(2, 2)), xsum.s(), add.s(1), add.s(2)))
    p = plan(old, new, {"h0.add", "h1.add", "b.0.xsum"})
    assert p.compatible and p.kept == ["h0.add", "h1.add", "b.0.xsum"]
    assert p.rerun == ["b.1.add"] and p.added == ["b.2.add"]


def test_step_ids_follow_the_canvas_shape_so_a_chord_body_grown_into_a_chain_does_not_map():
    old = graph(chain(group(add.s(1, 1), add.s(2, 2)), xsum.s()))
    new = graph(chain(group(add.s(1, 1), add.s(2, 2)), xsum.s(), add.s(1)))  # body b.xsum -> b.0.xsum
    p = plan(old, new, {"h0.add", "h1.add", "b.xsum"})
    assert [m.step_id for m in p.mismatches] == ["b.xsum"]
    assert p.kept == ["h0.add", "h1.add"] and p.added == ["b.0.xsum", "b.1.add"]


def test_priorities_are_translated_for_each_broker_and_the_run_priority_wins():
    g = graph(chain(add.s(1, 1), add.s(2).set(priority=2)))
    priorities.apply(g, None, "redis")
    assert "priority" not in g.steps["0.add"].options and g.steps["1.add"].options["priority"] == 7
    h = graph(chain(add.s(1, 1), add.s(2).set(priority=2)))
    priorities.apply(h, 9, "amqp")
    assert [n.options["priority"] for n in h.steps.values()] == [9, 9]
    assert priorities.run_priority(h) == 9 and priorities.run_priority(g) is None
    r = graph(add.s(1, 1))
    priorities.apply(r, 9, "redis")
    assert r.steps["add"].options["priority"] == 0  # kombu's Redis transport reads 0 first
    with pytest.raises(InputError, match="from 0 to 9"):
        priorities.checked(10)
    with pytest.raises(InputError, match="from 0 to 9"):
        priorities.checked(True)
