"""Pictures of workflows and runs: Mermaid flowcharts and Graphviz dot, with step status."""

from __future__ import annotations

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


def _label(graph: StepGraph, sid: str, status: dict[str, str]) -> str:
    node = graph.steps[sid]
    text = f"{sid}<br/>{node.task}" if node.kind == "task" else f"{sid}<br/>{node.kind}: {node.task}"
    if sid in status:
        text += f"<br/>[{status[sid]}]"
    return text


def mermaid(graph: StepGraph, status: dict[str, str] | None = None) -> str:
    status = status or {}
    ids = {sid: f"s{i}" for i, sid in enumerate(graph.steps)}
    lines = ["flowchart TD"]
    for sid, nid in ids.items():
        label = _label(graph, sid, status).replace('"', "'")
        lines.append(f'    {nid}["{label}"]')
    for sid, node in graph.steps.items():
        lines.extend(f"    {ids[dep]} --> {ids[sid]}" for dep in node.deps)
    for sid, nid in ids.items():
        if sid in status:
            lines.append(f"    style {nid} fill:{STATUS_COLORS.get(status[sid], '#ffffff')}")
    return "\n".join(lines) + "\n"


def dot(graph: StepGraph, status: dict[str, str] | None = None, name: str = "workflow") -> str:
    status = status or {}
    ids = {sid: f"s{i}" for i, sid in enumerate(graph.steps)}
    lines = [f'digraph "{name}" {{', "  rankdir=TB;", "  node [shape=box, style=filled, fillcolor=white];"]
    for sid, nid in ids.items():
        label = _label(graph, sid, status).replace("<br/>", "\\n").replace('"', "'")
        fill = STATUS_COLORS.get(status.get(sid, ""), "#ffffff")
        lines.append(f'  {nid} [label="{label}", fillcolor="{fill}"];')
    for sid, node in graph.steps.items():
        lines.extend(f"  {ids[dep]} -> {ids[sid]};" for dep in node.deps)
    lines.append("}")
    return "\n".join(lines) + "\n"
