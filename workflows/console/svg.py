"""A run's step graph as server-rendered SVG: a layered layout, each node coloured by status.

A step's layer is the longest path to it from a root, so every edge points down; a layer
wider than ``PER_ROW`` wraps onto more rows. Nodes carry ``class="node status-<status>"``,
``data-step`` and ``data-status`` (the compensation's status once one ran), and a fill from
``pictures.STATUS_COLORS``, so the page, its tests and a reader agree on what a colour means.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.views.pictures import STATUS_COLORS

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 200, 54, 22, 40, 16
PER_ROW = 8


def layers(graph: StepGraph) -> list[list[str]]:
    """Steps by layer (longest path from a root), in dispatch order within a layer."""
    depth: dict[str, int] = {}

    def level(sid: str) -> int:
        if sid not in depth:
            deps = graph.steps[sid].deps
            depth[sid] = 0 if not deps else 1 + max(level(d) for d in deps)
        return depth[sid]

    out: list[list[str]] = []
    for sid in graph.steps:
        n = level(sid)
        while len(out) <= n:
            out.append([])
        out[n].append(sid)
    return out


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(graph: StepGraph, status: Mapping[str, str], notes: Mapping[str, str] | None = None) -> str:
    """The SVG document; ``status`` maps step id to the status shown, ``notes`` adds a third line."""
    notes = notes or {}
    rows = [layer[i : i + PER_ROW] for layer in layers(graph) for i in range(0, len(layer), PER_ROW)]
    widest = max((len(r) for r in rows), default=1)
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X
    height = PAD * 2 + len(rows) * NODE_H + max(len(rows) - 1, 0) * GAP_Y
    at: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        left = (width - (len(row) * NODE_W + (len(row) - 1) * GAP_X)) / 2
        for i, sid in enumerate(row):
            at[sid] = (left + i * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="run-graph" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/>'
        "</marker></defs>",
    ]
    for sid, node in graph.steps.items():
        x, y = at[sid]
        for dep in node.deps:
            dx, dy = at[dep]
            x1, y1, x2, y2 = dx + NODE_W / 2, dy + NODE_H, x + NODE_W / 2, y
            mid = (y1 + y2) / 2
            parts.append(
                f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} '
                f'{x2:.0f},{y2 - 2:.0f}" fill="none" stroke="#90a4ae" stroke-width="1.4" '
                'marker-end="url(#arrow)"/>'
            )
    for sid, node in graph.steps.items():
        x, y = at[sid]
        shown = status.get(sid, "pending")
        fill = STATUS_COLORS.get(shown, "#ffffff")
        kind = "" if node.kind == "task" else f"{node.kind}: "
        lines = [_short(sid, 28), _short(f"{kind}{node.task.rsplit('.', 1)[-1]} · {shown}", 30)]
        if notes.get(sid):
            lines.append(_short(notes[sid], 30))
        text = "".join(
            f'<text x="{x + 10:.0f}" y="{y + 18 + i * 15:.0f}" class="{"sid" if i == 0 else "sub"}">'
            f"{escape(line)}</text>"
            for i, line in enumerate(lines)
        )
        parts.append(
            f'<a href="#step-{escape(sid)}"><g class="node status-{escape(shown)}" '
            f'data-step="{escape(sid)}" data-status="{escape(shown)}">'
            f"<title>{escape(sid)} ({escape(node.task)}): {escape(shown)}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{fill}" '
            f'stroke="#546e7a" stroke-width="1"/>{text}</g></a>'
        )
    parts.append("</svg>")
    return "".join(parts)
