"""Pictures of workflows and runs: Mermaid flowcharts and Graphviz dot, with step status and route."""

from __future__ import annotations

from typing import Any

from canvasflow.workflows.runtime.graph import StepGraph

STATUS_COLORS = {
    "succeeded": "#c8e6c9",
    "running": "#bbdefb",
    "queued": "#e1f5fe",
    "waiting": "#fff9c4",
    "failed": "#ffcdd2",
    "compensated": "#d7ccc8",
    "compensating": "#ffe0b2",
    "compensation_failed": "#ef9a9a",
    "skipped": "#eeeeee",
    "pending": "#ffffff",
}


Routes = dict[str, dict[str, Any]]


def _label(graph: StepGraph, sid: str, status: dict[str, str], routes: Routes) -> str:
    node = graph.steps[sid]
    text = f"{sid}<br/>{node.task}" if node.kind == "task" else f"{sid}<br/>{node.kind}: {node.task}"
    if sid in status:
        text += f"<br/>[{status[sid]}]"
    route = routes.get(sid)
    if route:  # every routing decision, oldest first: engine, queue, strategy, reason, outcome
        for decision in route.get("decisions") or [route]:
            text += f"<br/>engine {decision.get('engine')} on {decision.get('queue')}"
            text += f"<br/>{decision.get('strategy')}: {decision.get('reason')}"
            if decision.get("outcome"):
                text += f" -> {decision['outcome']}"
        if not route.get("decisions") and route.get("tried"):  # journaled before 0004: names only
            text += f"<br/>tried {', '.join(route['tried'])}"
    return text


def mermaid(graph: StepGraph, status: dict[str, str] | None = None, routes: Routes | None = None) -> str:
    status, routes = status or {}, routes or {}
    ids = {sid: f"s{i}" for i, sid in enumerate(graph.steps)}
    lines = ["flowchart TD"]
    for sid, nid in ids.items():
        label = _label(graph, sid, status, routes).replace('"', "'")
        lines.append(f'    {nid}["{label}"]')
    for sid, node in graph.steps.items():
        lines.extend(f"    {ids[dep]} --> {ids[sid]}" for dep in node.deps)
    for sid, nid in ids.items():
        if sid in status:
            lines.append(f"    style {nid} fill:{STATUS_COLORS.get(status[sid], '#ffffff')}")
    return "\n".join(lines) + "\n"


def dot(
    graph: StepGraph,
    status: dict[str, str] | None = None,
    name: str = "workflow",
    routes: Routes | None = None,
) -> str:
    status, routes = status or {}, routes or {}
    ids = {sid: f"s{i}" for i, sid in enumerate(graph.steps)}
    lines = [f'digraph "{name}" {{', "  rankdir=TB;", "  node [shape=box, style=filled, fillcolor=white];"]
    for sid, nid in ids.items():
        label = _label(graph, sid, status, routes).replace("<br/>", "\\n").replace('"', "'")
        fill = STATUS_COLORS.get(status.get(sid, ""), "#ffffff")
        lines.append(f'  {nid} [label="{label}", fillcolor="{fill}"];')
    for sid, node in graph.steps.items():
        lines.extend(f"  {ids[dep]} -> {ids[sid]};" for dep in node.deps)
    lines.append("}")
    return "\n".join(lines) + "\n"
