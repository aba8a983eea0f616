"""The rollback planner, fed recorded journals (tests/data/journals) and small hand-made ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery import chain

from canvasflow.compensation.planner import compensable_units, plan
from canvasflow.config.celery_app import app
from canvasflow.workers.demo import add
from canvasflow.workflows.authoring.patterns import map_reduce
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph

JOURNALS = sorted((Path(__file__).parents[1] / "data" / "journals").glob("*.json"))


def comp(name: str) -> str | None:
    return "demo.undo" if name in ("demo.add", "canvasflow.map", "demo.mul") else None


@pytest.mark.parametrize("path", JOURNALS, ids=[p.stem for p in JOURNALS])
def test_recorded_journal_gives_the_expected_plan(path):
    case = json.loads(path.read_text())
    p = plan(StepGraph.from_json(case["graph"]), case["steps"], case["comp"])
    expect = case["expect"]
    assert (p.ready, p.waiting, p.in_flight, p.done) == (
        expect["ready"],
        expect["waiting"],
        expect["in_flight"],
        expect["done"],
    )


def test_never_plans_a_step_that_did_not_complete():
    g = compile_canvas(chain(add.s(1, 1), add.s(1), add.s(1)), app, compensation_of=comp)
    p = plan(g, {"0.add": "succeeded", "1.add": "failed", "2.add": "skipped"}, {})
    assert p.ready == ["0.add"] and not p.waiting


def test_dispatched_compensations_are_not_planned_again():
    g = compile_canvas(chain(add.s(1, 1), add.s(1)), app, compensation_of=comp)
    p = plan(g, {"0.add": "succeeded", "1.add": "failed"}, {"0.add": "dispatched"})
    assert p.ready == [] and p.waiting == ["0.add"] and not p.done


def test_fallback_steps_need_no_compensation():
    g = compile_canvas(chain(add.s(1, 1), add.s(1)), app, compensation_of=comp)
    assert compensable_units(g, {"0.add": "succeeded"}, {"0.add": "not_needed"}) == []


def test_map_chunks_are_the_units_and_undo_before_the_items_source():
    from canvasflow.workers.demo import mul, xsum

    g = compile_canvas(
        map_reduce(mul.s(2), xsum.s(), items_from=add.s(1, 1), chunk_size=2), app, compensation_of=comp
    )
    steps = {
        "0.add": "succeeded",
        "1.map#0": "succeeded",
        "1.map#1": "partial",
        "1.map#2": "running",
        "1.map": "failed",
    }
    p = plan(g, steps, {})
    assert p.ready == ["1.map#0", "1.map#1"]
    assert p.waiting == ["0.add"] and p.in_flight == ["1.map#2"]
