"""Retention: delete old finished runs from the journal, in batches (``canvasflow prune``).

A top-level run is pruned when it ended (a terminal status; never a run still active) before the
cutoff (its ``finished_at``, else its ``created_at``), and its status is one of those asked for.
Its steps, events, signals and tags go with it, and so do its child runs (sub-workflows, pruned
only with their top-level run): a run with a run still active below it is kept whole. Each batch is one
transaction, so an interrupted prune leaves whole runs, and a second one goes on where it stopped.
Works the same on SQLite and PostgreSQL (SQLAlchemy Core).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from canvasflow.config.errors import InputError
from canvasflow.workflows.store.records import TERMINAL
from canvasflow.workflows.store.rows import utc
from canvasflow.workflows.store.sql import SqlRunStore

_CHILD_TABLES = ("events", "steps", "signals", "run_tags")


@dataclass
class PruneReport:
    """What a prune deleted (or, with ``dry_run``, would delete): rows per table."""

    cutoff: datetime
    dry_run: bool
    runs: int = 0
    steps: int = 0
    events: int = 0
    signals: int = 0
    run_tags: int = 0
    kept_active: list[str] = field(default_factory=list)  # old runs kept: a child run is still active

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "cutoff": self.cutoff.isoformat()}


def prune(
    store: SqlRunStore,
    before: datetime,
    *,
    statuses: Sequence[str] | None = None,
    batch: int = 500,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the runs that ended before ``before`` (with ``statuses``: only those) and all of theirs."""
    wanted = list(dict.fromkeys(statuses or sorted(TERMINAL)))
    active = [s for s in wanted if s not in TERMINAL]
    if active:
        raise InputError(
            f"prune never deletes active runs: status {', '.join(active)} is not one a run ends in; "
            f"use {', '.join(sorted(TERMINAL))}"
        )
    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    cutoff = utc(before)
    report = PruneReport(cutoff, dry_run)
    runs = store.t.runs
    ended = func.coalesce(runs.c.finished_at, runs.c.created_at)
    last = ""
    while True:
        q = (
            select(runs.c.id)
            .where(
                runs.c.parent_run_id.is_(None), runs.c.status.in_(wanted), ended < cutoff, runs.c.id > last
            )
            .order_by(runs.c.id)
            .limit(batch)
        )
        with store.engine.connect() as conn:
            tx = conn.begin()
            roots = list(conn.scalars(q))
            if not roots:
                tx.rollback()
                return report
            last = roots[-1]
            _delete(store, conn, _with_children(store, conn, roots, report), report)
            if dry_run:
                tx.rollback()  # counted, not deleted
            else:
                tx.commit()


def _with_children(store: SqlRunStore, conn: Connection, roots: list[str], report: PruneReport) -> list[str]:
    """``roots`` and their descendants; a root with an active run below it is left out (whole)."""
    runs = store.t.runs
    parent: dict[str, str | None] = dict.fromkeys(roots)
    frontier = list(roots)
    active: list[str] = []
    while frontier:
        rows = conn.execute(
            select(runs.c.id, runs.c.parent_run_id, runs.c.status).where(runs.c.parent_run_id.in_(frontier))
        ).all()
        frontier = [r.id for r in rows if r.id not in parent]
        for r in rows:
            parent.setdefault(r.id, r.parent_run_id)
            if r.status not in TERMINAL:
                active.append(r.id)
    kept: set[str] = set()
    for run_id in active:  # its ancestors stay, and so (below) does everything under them
        up = parent.get(run_id)
        while up is not None:
            kept.add(up)
            up = parent.get(up)
    if not kept:
        return list(parent)
    report.kept_active += sorted(r for r in roots if r in kept)
    return [r for r in parent if not _under(r, kept, parent)]


def _under(run_id: str, kept: set[str], parent: dict[str, str | None]) -> bool:
    node: str | None = run_id
    while node is not None:
        if node in kept:
            return True
        node = parent.get(node)
    return False


def _delete(store: SqlRunStore, conn: Connection, run_ids: Iterable[str], report: PruneReport) -> None:
    ids = list(run_ids)
    if not ids:
        return
    for name in _CHILD_TABLES:
        table = getattr(store.t, name)
        deleted = conn.execute(table.delete().where(table.c.run_id.in_(ids))).rowcount
        setattr(report, name, getattr(report, name) + deleted)
    runs = store.t.runs
    # children before their parents (the parent_run_id foreign key), deepest first
    depth = _depths(conn, store, ids)
    for level in sorted(set(depth.values()), reverse=True):
        chunk = [r for r in ids if depth[r] == level]
        report.runs += conn.execute(runs.delete().where(runs.c.id.in_(chunk))).rowcount


def _depths(conn: Connection, store: SqlRunStore, ids: list[str]) -> dict[str, int]:
    runs = store.t.runs
    parent = dict(conn.execute(select(runs.c.id, runs.c.parent_run_id).where(runs.c.id.in_(ids))).all())
    depth: dict[str, int] = {}
    for run_id in ids:
        d, node = 0, parent.get(run_id)
        while node is not None and node in parent:
            d, node = d + 1, parent.get(node)
        depth[run_id] = d
    return depth
