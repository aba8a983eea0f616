"""Retention on SQLite and PostgreSQL: old finished runs go with everything of theirs; active
runs, recent runs and runs with an active child stay; the CLI says what it did."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from canvasflow.config.errors import InputError
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.retention import prune
from canvasflow.workflows.store.sql import SqlRunStore, store_for

OLD = datetime.now(UTC) - timedelta(days=40)
CUTOFF = datetime.now(UTC) - timedelta(days=30)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> SqlRunStore:
    if request.param == "sqlite":
        return store_for(f"sqlite:///{tmp_path / 'prune.db'}")
    return store_for(request.getfixturevalue("postgres_url"))


def make_run(
    store: SqlRunStore,
    status: str,
    *,
    ended: datetime | None = OLD,
    parent: str | None = None,
    tags: tuple[str, ...] = ("shop",),
) -> str:
    """A run with two steps, a tag, a signal and events, that ended (or began) at ``ended``."""
    run_id = uuid.uuid4().hex
    store.create_run(
        run_id=run_id,
        workflow="wf",
        version="1",
        inputs={},
        graph={"steps": [{"id": "a"}, {"id": "b"}], "result": None},
        steps=[{"step_id": s, "task": "demo.add", "kind": "task", "queue": "cap.demo"} for s in "ab"],
        parent_run_id=parent,
        parent_step="1.child" if parent else None,
        tags=tags,
    )
    store.record_step(run_id, "a", "step.succeeded", status="succeeded", attempts=1)
    store.put_signal(run_id, "approved", {"by": "ann"})
    if status != "running":
        assert store.transition_run(run_id, ("running",), status)
    runs = store.t.runs
    with store.engine.begin() as conn:  # make it old: what 40 days of waiting would have done
        fields = {"created_at": ended} if status == "running" else {"created_at": ended, "finished_at": ended}
        conn.execute(runs.update().where(runs.c.id == run_id).values(**fields))
    return run_id


def rows_of(store: SqlRunStore, run_ids: list[str]) -> dict[str, int]:
    t = store.t
    with store.engine.connect() as conn:
        counts = {
            name: conn.scalar(select(func.count()).select_from(table).where(table.c.run_id.in_(run_ids)))
            for name, table in (
                ("steps", t.steps),
                ("events", t.events),
                ("signals", t.signals),
                ("tags", t.run_tags),
            )
        }
        counts["runs"] = conn.scalar(select(func.count()).select_from(t.runs).where(t.runs.c.id.in_(run_ids)))
    return counts


def test_prune_deletes_old_finished_runs_with_everything_of_theirs(store: SqlRunStore) -> None:
    old_ok = make_run(store, "succeeded")
    old_failed = make_run(store, "compensated")
    parent = make_run(store, "succeeded")
    child = make_run(store, "succeeded", parent=parent, ended=datetime.now(UTC))  # goes with its parent
    recent = make_run(store, "succeeded", ended=datetime.now(UTC) - timedelta(days=2))
    still_running = make_run(store, "running")
    waiting_parent = make_run(store, "failed")
    active_child = make_run(store, "running", parent=waiting_parent)

    report = prune(store, CUTOFF, batch=1)  # one run per transaction: the batches add up

    gone = [old_ok, old_failed, parent, child]
    assert rows_of(store, gone) == {"runs": 0, "steps": 0, "events": 0, "signals": 0, "tags": 0}
    kept = [recent, still_running, waiting_parent, active_child]
    assert {r: store.get_run(r) is not None for r in kept} == dict.fromkeys(kept, True)
    # each: run.created, step.succeeded, run.signal; and run.succeeded, run.failed of the two that ended
    assert rows_of(store, kept) == {"runs": 4, "steps": 8, "events": 4 * 3 + 2, "signals": 4, "tags": 4}
    assert (report.runs, report.steps, report.signals, report.run_tags) >= (4, 8, 4, 4)
    assert waiting_parent in report.kept_active
    assert store.get_run(recent).step("a").status == "succeeded"


def test_only_the_statuses_asked_for_and_a_dry_run_deletes_nothing(store: SqlRunStore) -> None:
    ok, failed = make_run(store, "succeeded"), make_run(store, "failed")
    dry = prune(store, CUTOFF, statuses=["failed"], dry_run=True)
    assert dry.dry_run and dry.runs >= 1 and rows_of(store, [ok, failed])["runs"] == 2
    real = prune(store, CUTOFF, statuses=["failed"])
    assert (real.runs, real.steps, real.events) == (dry.runs, dry.steps, dry.events)
    assert store.get_run(failed) is None and store.get_run(ok) is not None


def test_active_statuses_are_refused(store: SqlRunStore) -> None:
    with pytest.raises(InputError, match="never deletes active runs: status running"):
        prune(store, CUTOFF, statuses=["running"])


@pytest.mark.redis
def test_the_cli_prunes_the_journal_and_refuses_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    store = runtime().store
    old = make_run(store, "cancelled")
    assert main(["prune", "--older-than", "30d", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["runs"] >= 1 and store.get_run(old) is not None
    assert main(["prune", "--older-than", "30d", "--status", "cancelled"]) == 0
    assert capsys.readouterr().out.startswith(f"deleted {dry['runs']} run(s) that ended before ")
    assert store.get_run(old) is None
    assert main(["prune", "--older-than", "a month", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "InputError" and "--older-than 'a month'" in error["error"]
