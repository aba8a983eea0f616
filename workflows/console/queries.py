"""What the console shows, read from the journal and the live Redis state (no HTML here).

Runs are paged by creation time: a page ends with the ``before`` cursor of the next one
(runs created strictly earlier), so pages stay stable while new runs arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from canvasflow.config.errors import InputError
from canvasflow.workflows.client import get_run, list_runs
from canvasflow.workflows.runs.history import history
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.store.records import RUN_STATUSES, TERMINAL
from canvasflow.workflows.views.reports import parse_when, run_json, runs_json
from canvasflow.workflows.views.runtree import TreeNode, canvas_tree, chunk_counts, duration_ms, with_chunks


@dataclass(frozen=True)
class RunFilters:
    """The runs list's filters, as given in the query string (blank: not filtered)."""

    workflow: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    before: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RunFilters:
        found = cls(
            **{k: (query.get(k) or "").strip() for k in ("workflow", "status", "since", "until", "before")}
        )
        if found.status and found.status not in RUN_STATUSES:
            raise InputError(f"unknown run status {found.status!r}: one of {', '.join(RUN_STATUSES)}")
        return found

    def query(self, **changes: str) -> str:
        """The query string of these filters with ``changes`` applied."""
        values = {**self.__dict__, **changes}
        return urlencode({k: v for k, v in values.items() if v})


@dataclass
class RunsPage:
    runs: list[dict[str, Any]]
    next_before: str | None


def runs_page(filters: RunFilters, page_size: int) -> RunsPage:
    """One page of runs, newest first, and the cursor of the next page (None on the last)."""
    until = parse_when(filters.until or None, "until")
    before = _cursor(filters.before)
    if before is not None and (until is None or before < until):
        until = before
    records = list_runs(
        filters.status or None,
        filters.workflow or None,
        page_size + 1,
        since=parse_when(filters.since or None, "since"),
        until=until,
    )
    more = len(records) > page_size
    runs = runs_json(records[:page_size])
    return RunsPage(runs, runs[-1]["created_at"] if more and runs else None)


def _cursor(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"page cursor {text!r} is not an ISO timestamp") from None


@dataclass
class Row:
    """A line of the run page's step table: a canvas part (``step`` None) or a step, indented."""

    depth: int
    label: str
    step: dict[str, Any] | None = None
    chunks: dict[str, int] = field(default_factory=dict)
    duration_ms: float | None = None
    flower: str | None = None


@dataclass
class RunView:
    data: dict[str, Any]  # run_json: what `canvasflow status --json` prints
    graph: StepGraph | None
    rows: list[Row]
    shown: dict[str, str]  # step id -> the status its node shows (the compensation's once one ran)
    notes: dict[str, str]
    children: list[dict[str, Any]]
    events: list[dict[str, Any]]
    events_source: str

    @property
    def terminal(self) -> bool:
        return self.data["status"] in TERMINAL


def run_view(run_id: str, flower_url: str | None) -> RunView:
    """The run page's data; RunNotFound for an unknown id."""
    record = get_run(run_id)
    data = run_json(record)
    steps = {s["step_id"]: s for s in data["steps"]}
    graph = StepGraph.from_json(record.graph) if record.graph else None
    shown = {sid: s.get("compensation_status") or s["status"] for sid, s in steps.items()}
    notes: dict[str, str] = {}
    for sid, s in steps.items():
        if s.get("kind") == "map":
            c = chunk_counts(steps, sid)
            if c["total"]:
                notes[sid] = f"chunks {c.get('succeeded', 0)}/{c['total']} done, {c.get('failed', 0)} failed"
    rows: list[Row] = []
    if graph is not None:
        _rows(canvas_tree(graph), 0, steps, flower_url, rows)
    rt = runtime()
    children = runs_json(rt.store.children(run_id))
    events, source = _events(run_id)
    return RunView(data, graph, rows, shown, notes, children, events, source)


def _rows(
    node: TreeNode, depth: int, steps: Mapping[str, dict[str, Any]], flower: str | None, out: list[Row]
) -> None:
    if node.step_id is not None:
        step = with_chunks(steps.get(node.step_id) or {"step_id": node.step_id, "status": "pending"}, steps)
        link = f"{flower.rstrip('/')}/task/{step['task_id']}" if flower and step.get("task_id") else None
        counts = chunk_counts(steps, node.step_id) if step.get("kind") == "map" else {}
        out.append(Row(depth, node.step_id, step, counts, duration_ms(step), link))
        return
    count = f" ({len(node.children)})" if node.kind in ("chain", "group", "header", "dag") else ""
    out.append(Row(depth, f"{node.kind}{count}"))
    for child in node.children:
        _rows(child, depth + 1, steps, flower, out)


def _events(run_id: str) -> tuple[list[dict[str, Any]], str]:
    """The run's events in the order they happened, and where they come from."""
    return [e.to_json() for e in history(run_id)], "history"
