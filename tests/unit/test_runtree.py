"""The step tree of `canvasflow status`: it follows the canvas as written, maps are one line."""

from __future__ import annotations

from celery import chain, chord, group

from canvasflow.config.celery_app import app
from canvasflow.workers.demo import add, echo, mul, xsum
from canvasflow.workflows.authoring.patterns import map_reduce
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, lit
from canvasflow.workflows.views.reports import run_text
from canvasflow.workflows.views.runtree import canvas_tree, chunk_counts, duration_ms, tree_lines


def shape(node):
    """The tree as nested tuples: a step is its id, a part is (kind, [children])."""
    return node.step_id if node.step_id else (node.kind, [shape(c) for c in node.children])


def tree_of(canvas):
    return canvas_tree(compile_canvas(canvas, app))


def test_a_chain_around_a_chord_nests_header_and_body():
    tree = tree_of(chain(add.s(1, 1), chord([add.s(1), mul.s(2)], xsum.s())))
    assert shape(tree) == (
        "chain",
        [
            "0.add",
            ("chord", [("header", ["1.h0.add", "1.h1.mul"]), ("body", ["1.b.xsum"])]),
        ],
    )


def test_a_group_of_chains_is_told_from_a_chain_of_groups():
    g_of_chains = tree_of(group(chain(add.s(1, 1), mul.s(2)), chain(add.s(2, 2), mul.s(3))))
    assert shape(g_of_chains) == (
        "group",
        [("chain", ["0.0.add", "0.1.mul"]), ("chain", ["1.0.add", "1.1.mul"])],
    )
    c_of_groups = tree_of(chain(add.s(1, 1), group(mul.s(2), mul.s(3))))  # a group then a task: a chord
    assert shape(c_of_groups) == ("chain", ["0.add", ("group", ["1.0.mul", "1.1.mul"])])


def test_a_chord_nested_in_a_chord_header():
    inner = chord([add.s(1, 1), add.s(2, 2)], xsum.s())
    tree = tree_of(chord([inner, add.s(3, 3)], xsum.s()))
    assert shape(tree) == (
        "chord",
        [
            (
                "header",
                [("chord", [("header", ["h0.h0.add", "h0.h1.add"]), ("body", ["h0.b.xsum"])]), "h1.add"],
            ),
            ("body", ["b.xsum"]),
        ],
    )


def test_one_task_and_the_dag_form():
    assert shape(tree_of(add.s(1, 2))) == "add"
    steps = {
        "users": StepNode("users", "demo.echo"),
        "orders": StepNode("orders", "demo.echo"),
        "joined": StepNode("joined", "demo.xsum", deps=["users", "orders"]),
    }
    assert shape(canvas_tree(StepGraph(steps, lit(None)))) == ("dag", ["users", "orders", "joined"])
    dotted = {"fetch.users": StepNode("fetch.users", "demo.echo")}  # not the compiler's grammar
    assert shape(canvas_tree(StepGraph(dotted, lit(None)))) == ("dag", ["fetch.users"])


def test_a_map_step_is_one_line_with_its_chunk_counts():
    graph = compile_canvas(map_reduce(mul.s(2), xsum.s(), items_from=echo.s(1, 2, 3), chunk_size=1), app)
    steps = {
        "0.echo": {"step_id": "0.echo", "task": "demo.echo", "status": "succeeded", "attempts": 1},
        "1.map": {"step_id": "1.map", "task": "canvasflow.map", "kind": "map", "status": "failed"},
        **{
            f"1.map#{i}": {
                "step_id": f"1.map#{i}",
                "kind": "chunk",
                "status": "failed" if i == 2 else "succeeded",
                "queue": "cap.demo",
                "worker": f"w{i % 2}@host",
                "started_at": f"2026-05-01T12:00:0{i}+00:00",
                "finished_at": f"2026-05-01T12:00:0{i}.500000+00:00",
            }
            for i in range(3)
        },
        "2.xsum": {"step_id": "2.xsum", "task": "demo.xsum", "status": "skipped"},
    }
    assert chunk_counts(steps, "1.map") == {"total": 3, "succeeded": 2, "failed": 1}
    lines = tree_lines(canvas_tree(graph), steps)
    assert len(lines) == 4  # the chain and its three steps: no line per chunk
    (map_line,) = [line for line in lines if "1.map" in line]
    assert "chunks 2/3 done, 1 failed" in map_line and "#" not in map_line
    # its span over the chunks: first start to last finish, their queue, how many workers
    assert "2500.0 ms" in map_line and "cap.demo" in map_line and "2 workers" in map_line


def test_the_text_shows_duration_queue_worker_attempts_error_and_compensation():
    graph = compile_canvas(chain(add.s(1, 1), chord([add.s(1), mul.s(2)], xsum.s())), app)
    step = {
        "task": "demo.add",
        "status": "compensated",
        "attempts": 2,
        "queue": "cap.demo",
        "worker": "demo@host",
        "started_at": "2026-05-01T12:00:00+00:00",
        "finished_at": "2026-05-01T12:00:00.250000+00:00",
        "compensation_status": "compensated",
    }
    failed = {**step, "status": "failed", "error": {"type": "RuntimeError", "message": "boom\nsecond line"}}
    steps = [
        {**step, "step_id": "0.add"},
        {**step, "step_id": "1.h0.add"},
        {**failed, "step_id": "1.h1.mul", "task": "demo.mul", "compensation_status": None},
        {"step_id": "1.b.xsum", "task": "demo.xsum", "status": "skipped", "attempts": 0},
    ]
    assert duration_ms(steps[0]) == 250.0
    data = {"id": "r1", "workflow": "wf", "version": "1", "status": "compensated", "steps": steps}
    text = run_text(data, graph.to_json()).splitlines()
    assert text[0] == "run r1  wf v1  compensated"
    assert text[1].strip() == "chain (2 parts)"
    first = next(line for line in text if "0.add" in line)
    for part in ("compensated", "250.0 ms", "cap.demo", "demo@host", "attempts=2", "comp=compensated"):
        assert part in first
    failing = next(line for line in text if "1.h1.mul" in line)
    assert "error: RuntimeError: boom second line" in failing
    # the header members are indented under the chord's header, deeper than the chain's parts
    assert failing.index("1.h1.mul") > first.index("0.add")
    header = next(line for line in text if "header (2 members)" in line)
    assert failing.index("1.h1.mul") > header.index("header")
    # step details start in one column
    starts = {line.index(st) for line in text for st in ("compensated ", "failed ", "skipped ") if st in line}
    assert len(starts) == 1
