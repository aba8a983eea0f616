"""``canvasflow workflows``, ``graph`` and ``check``: the workflows this project defines, their
pictures (or a run's), and the steps that write but cannot be undone."""

from __future__ import annotations

import argparse

from canvasflow.compensation.registry import registry as compensations
from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import RunNotFound, WorkflowNotFound
from canvasflow.workers.step import StepTask
from canvasflow.workflows.authoring.definition import registry
from canvasflow.workflows.cli._common import JSON_SOURCES, AddCommand, emit, load_json
from canvasflow.workflows.client import get_run
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.views.pictures import dot, mermaid


def cmd_check(args: argparse.Namespace) -> int:
    """Steps marked ``writes=True`` that have no compensation, and compensations of unknown steps."""
    registry.load()
    app = current_app()
    problems = [
        f"step {name} writes but has no compensation: add @compensates({name.rsplit('.', 1)[-1]})"
        for name, task in sorted(app.tasks.items())
        if isinstance(task, StepTask)
        and getattr(task, "writes", False)
        and not compensations.compensation_of(name)
    ]
    problems += [
        f"compensation {comp} undoes {step}, which is not a registered step"
        for step, comp in compensations.items()
        if step not in app.tasks
    ]
    emit(args, {"problems": problems}, lambda: "\n".join(problems) or "no problems")
    return 1 if problems else 0


def cmd_graph(args: argparse.Namespace) -> int:
    try:
        record = get_run(args.target)
        graph, status = StepGraph.from_json(record.graph), {s.step_id: s.status for s in record.steps}
        routes = {s.step_id: {**s.route, "decisions": s.routes or []} for s in record.steps if s.route}
        for s in record.steps:
            if s.compensation_status:
                status[s.step_id] = s.compensation_status
        title = f"{record.workflow} run {record.id}"
    except RunNotFound:
        try:
            wf = registry.get(args.target)
        except WorkflowNotFound:
            raise WorkflowNotFound(f"{args.target!r} is neither a run id nor a workflow name") from None
        graph, status, title = wf.compile(wf.validate(load_json(args.input, "--input"))), {}, wf.name
        routes = {}
    text = mermaid(graph, status, routes) if args.format == "mermaid" else dot(graph, status, title, routes)
    emit(args, {"format": args.format, "graph": text}, lambda: text.rstrip())
    return 0


def cmd_workflows(args: argparse.Namespace) -> int:
    data = [
        {"name": n, "versions": registry.versions(n), "inputs": registry.get(n).inputs.model_json_schema()}
        for n in registry.names()
    ]
    emit(args, data, lambda: "\n".join(f"{d['name']}  versions: {', '.join(d['versions'])}" for d in data))
    return 0


def configure_parsers(add: AddCommand) -> None:
    """``check``, ``graph`` and ``workflows``."""
    add("check", cmd_check)
    sp = add("graph", cmd_graph)
    sp.add_argument("target", help="a run id or a workflow name")
    sp.add_argument("--format", choices=["mermaid", "dot"], default="mermaid", help="picture language")
    sp.add_argument("--input", help="inputs (for a workflow name): " + JSON_SOURCES)
    add("workflows", cmd_workflows)
