"""What the CLI prints and the console's API answers about runs: one set of serialisers for both.

``run_json`` is a run with its steps and its tree (``canvasflow status --json``, the API's
``/api/runs/{id}``); ``runs_json`` a list without steps (``canvasflow runs --json``,
``/api/runs``); ``run_text`` the human form, the step tree of ``workflows/views/runtree.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from canvasflow.config.errors import InputError
from canvasflow.workers.routing.decisions import chain_text
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.store.records import RunRecord
from canvasflow.workflows.views.runtree import canvas_tree, tree_lines


def run_json(record: RunRecord) -> dict[str, Any]:
    """The run, every step, and ``tree``: the steps nested as the canvas (see runtree)."""
    data = record.to_json()
    if record.graph:
        data["tree"] = canvas_tree(StepGraph.from_json(record.graph)).to_json()
    return data


def runs_json(records: Iterable[RunRecord]) -> list[dict[str, Any]]:
    """Runs without their steps."""
    runs = [r.to_json() for r in records]
    for r in runs:
        r.pop("steps", None)
    return runs


def run_text(data: dict[str, Any], graph: dict[str, Any] | None = None) -> str:
    """A run's header lines, then its steps as a tree when the graph is known (else a flat list)."""
    lines = [f"run {data['id']}  {data['workflow']} v{data['version']}  {data['status']}"]
    if data.get("key") or data.get("tags"):
        lines.append(f"key: {data.get('key') or '-'}  tags: {', '.join(data.get('tags') or []) or '-'}")
    if data.get("result") is not None:
        lines.append(f"result: {json.dumps(data['result'])}")
    if data.get("error"):
        lines.append(f"error: {json.dumps(data['error'])}")
    asleep = [s["wakes_at"] for s in data.get("steps", []) if s.get("wakes_at") and s["status"] == "waiting"]
    if asleep and data["status"] == "waiting":
        lines.append(f"asleep until {min(asleep)}")
    steps = {s["step_id"]: s for s in data.get("steps", [])}
    if graph and graph.get("steps"):
        lines.extend("  " + line for line in tree_lines(canvas_tree(StepGraph.from_json(graph)), steps))
        return "\n".join(lines)
    for s in data.get("steps", []):
        comp = f"  comp={s['compensation_status']}" if s.get("compensation_status") else ""
        chain = chain_text(s.get("routes"), s.get("route"))  # every routing decision, oldest first
        routed = f"  engine={chain}" if chain else ""
        lines.append(
            f"  {s['step_id']:<28} {s['task']:<26} {s['status']:<12} "
            f"attempts={s['attempts']} {s.get('worker') or ''}{comp}{routed}"
        )
    return "\n".join(lines)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str | None, what: str) -> datetime | None:
    """An ISO timestamp (UTC unless it says otherwise), or a time ago: ``30m``, ``2h``, ``7d``."""
    if text is None:
        return None
    text = text.strip()
    if len(text) > 1 and text[-1] in _UNITS and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{what} {text!r} is neither an ISO timestamp (2026-05-01T12:00) nor a time ago (30m, 2h, 7d)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
