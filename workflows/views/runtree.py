"""A run's steps as a tree that follows its canvas (pure: graph and step records in, tree out).

The compiler names each step by its place in the canvas (``workflows/runtime/compiler.py``):
``1.h0.price_item`` is the first header member of the chord at position 1 of the top chain,
``1.b.total`` that chord's body, ``0.link0.x`` a link callback. Positions in a chain and
members of a group are both numbers; they are told apart by the graph: a chain's parts wait
on one another, a group's members do not. Step ids that do not follow that grammar (the DAG
form names its steps) make a flat ``dag`` node, in dispatch order.

A map step's chunks (journal rows ``<step>#<i>``) are not nodes: the map's line counts them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from canvasflow.workers.routing.decisions import chain_text
from canvasflow.workflows.runtime.graph import StepGraph

NodeKind = Literal["step", "chain", "group", "chord", "header", "body", "link", "dag"]
_SEGMENT = re.compile(r"^(\d+|h\d+|b|link\d+)$")


@dataclass
class TreeNode:
    """A step (``step_id`` set) or a part of the canvas holding other nodes."""

    kind: NodeKind
    step_id: str | None = None
    children: list[TreeNode] = field(default_factory=list)

    def step_ids(self) -> list[str]:
        """Every step under this node, in tree order."""
        if self.step_id is not None:
            return [self.step_id]
        return [sid for child in self.children for sid in child.step_ids()]

    def to_json(self) -> dict[str, Any]:
        if self.step_id is not None:
            return {"kind": "step", "step_id": self.step_id}
        return {"kind": self.kind, "children": [c.to_json() for c in self.children]}


@dataclass
class _Trie:
    leaf: str | None = None
    kids: dict[str, _Trie] = field(default_factory=dict)


def canvas_tree(graph: StepGraph) -> TreeNode:
    """The tree of ``graph``'s steps: chains, groups and chords as they were written."""
    ids = list(graph.steps)
    if not ids:
        return TreeNode("chain")
    if not all(all(_SEGMENT.match(seg) for seg in sid.split(".")[:-1]) for sid in ids) or (
        len(ids) > 1 and all("." not in sid for sid in ids)
    ):
        return TreeNode("dag", children=[TreeNode("step", sid) for sid in ids])
    root = _Trie()
    for sid in ids:
        node = root
        for seg in sid.split(".")[:-1]:
            node = node.kids.setdefault(seg, _Trie())
        node.leaf = sid
    return _convert(root, graph)


def _convert(trie: _Trie, graph: StepGraph) -> TreeNode:
    parts: list[TreeNode] = []
    if trie.leaf is not None:
        parts.append(TreeNode("step", trie.leaf))
    heads = sorted((k for k in trie.kids if k.startswith("h")), key=lambda k: int(k[1:]))
    if heads or "b" in trie.kids:
        chord = TreeNode(
            "chord", children=[TreeNode("header", children=[_convert(trie.kids[k], graph) for k in heads])]
        )
        if "b" in trie.kids:
            chord.children.append(TreeNode("body", children=[_convert(trie.kids["b"], graph)]))
        parts.append(chord)
    numbers = sorted((k for k in trie.kids if k.isdigit()), key=int)
    if numbers:
        members = [_convert(trie.kids[k], graph) for k in numbers]
        if len(members) == 1:
            parts.append(members[0])
        else:
            parts.append(
                TreeNode("chain" if _waits_on_each_other(members, graph) else "group", children=members)
            )
    links = sorted((k for k in trie.kids if k.startswith("link")), key=lambda k: int(k[4:]))
    parts.extend(TreeNode("link", children=[_convert(trie.kids[k], graph)]) for k in links)
    return parts[0] if len(parts) == 1 else TreeNode("chain", children=parts)


def _waits_on_each_other(members: list[TreeNode], graph: StepGraph) -> bool:
    """True for a chain: some part waits on a step of the part before it."""
    for before, after in itertools.pairwise(members):
        earlier = set(before.step_ids())
        if any(dep in earlier for sid in after.step_ids() for dep in graph.steps[sid].deps):
            return True
    return False


# -- text ---------------------------------------------------------------------------------
def chunk_counts(steps: Mapping[str, Mapping[str, Any]], step_id: str) -> dict[str, int]:
    """A map step's chunks by status (``total`` too), from the journal rows ``<step>#<i>``."""
    counts: dict[str, int] = {"total": 0}
    for sid, s in steps.items():
        if sid.startswith(f"{step_id}#"):
            counts["total"] += 1
            counts[s["status"]] = counts.get(s["status"], 0) + 1
    return counts


def map_summary(steps: Mapping[str, Mapping[str, Any]], step_id: str) -> dict[str, Any]:
    """A map step's span over its chunks: first start, last finish, queue and workers."""
    chunks = [s for sid, s in steps.items() if sid.startswith(f"{step_id}#")]
    starts = [t for t in (_when(c.get("started_at")) for c in chunks) if t is not None]
    ends = [t for t in (_when(c.get("finished_at")) for c in chunks) if t is not None]
    workers = sorted({c["worker"] for c in chunks if c.get("worker")})
    queues = sorted({c["queue"] for c in chunks if c.get("queue")})
    return {
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends and len(ends) == len(chunks) else None,
        "queue": ", ".join(queues) or None,
        "worker": workers[0] if len(workers) == 1 else (f"{len(workers)} workers" if workers else None),
    }


def with_chunks(step: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The step, a map step's missing timing, queue and worker filled in from its chunks."""
    out = dict(step)
    if step.get("kind") == "map":
        for key, value in map_summary(steps, step["step_id"]).items():
            if not out.get(key):
                out[key] = value
    return out


def duration_ms(step: Mapping[str, Any]) -> float | None:
    """Milliseconds from start to finish, or None until both are known."""
    start, end = _when(step.get("started_at")), _when(step.get("finished_at"))
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def _duration_text(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def error_text(error: Any, width: int = 90) -> str:
    """``Type: message`` on one line, cut to ``width``."""
    if not error:
        return ""
    if isinstance(error, Mapping):
        text = f"{error.get('type') or 'Error'}: {error.get('message') or ''}".rstrip(": ")
    else:
        text = str(error)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def step_details(step: Mapping[str, Any], steps: Mapping[str, Mapping[str, Any]]) -> str:
    """One step's line after its id: status, duration, queue, worker, attempts, and the rest."""
    step = with_chunks(step, steps)
    parts = [f"{step['status']:<12}", f"{_duration_text(duration_ms(step)):>9}"]
    if step.get("kind") == "map":
        c = chunk_counts(steps, step["step_id"])
        if c["total"]:
            parts.append(f"chunks {c.get('succeeded', 0)}/{c['total']} done, {c.get('failed', 0)} failed")
    parts += [step.get("queue") or "-", step.get("worker") or "-", f"attempts={step.get('attempts', 0)}"]
    progress = step.get("progress")
    if isinstance(progress, Mapping) and progress.get("total"):
        parts.append(
            f"progress {progress.get('done', 0)}/{progress['total']} {progress.get('note') or ''}".rstrip()
        )
    if step.get("compensation_status"):
        parts.append(f"comp={step['compensation_status']}")
    if step.get("wakes_at"):  # a sleep step: when it wakes (or was due)
        parts.append(f"{'wakes' if step['status'] == 'waiting' else 'due'} {step['wakes_at']}")
    chain = chain_text(step.get("routes"), step.get("route"))  # every routing decision, oldest first
    if chain:
        parts.append(f"engine={chain}")
    if step.get("error"):
        parts.append(f"error: {error_text(step['error'])}")
    if step.get("compensation_error"):
        parts.append(f"comp error: {error_text(step['compensation_error'])}")
    return "  ".join(parts)


_LABELS = {"body": "body", "link": "link (callback)"}


def _part_label(node: TreeNode) -> str:
    n = len(node.children)
    if node.kind == "chain":
        return f"chain ({n} parts)"
    if node.kind in ("group", "dag"):
        return f"{node.kind} ({n} members)" if node.kind == "group" else f"dag ({n} steps)"
    if node.kind == "header":
        return f"header ({n} members)"
    return _LABELS.get(node.kind, node.kind)


def tree_lines(tree: TreeNode, steps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The tree drawn with box characters, one line a node; tasks and details in aligned columns."""
    rows: list[tuple[str, str, str]] = []  # (tree and step id, task, details)

    def walk(node: TreeNode, lead: str, last: bool, top: bool) -> None:
        if node.step_id is not None:
            step = steps.get(node.step_id)
            name, task = node.step_id, str((step or {}).get("task", ""))
            details = step_details(step, steps) if step is not None else "pending"
        else:
            name, task, details = _part_label(node), "", ""
        rows.append((name if top else f"{lead}{'└─ ' if last else '├─ '}{name}", task, details))
        inner = lead if top else lead + ("   " if last else "│  ")
        for i, child in enumerate(node.children):
            walk(child, inner, i == len(node.children) - 1, False)

    walk(tree, "", True, True)
    width = max(len(name) for name, task, _ in rows if task) if any(t for _, t, _ in rows) else 0
    tasks = max((len(task) for _, task, _ in rows), default=0)
    return [
        f"{name:<{width}}  {task:<{tasks}}  {details}".rstrip() if details else name
        for name, task, details in rows
    ]
