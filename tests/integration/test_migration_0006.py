"""Migration 0006 on a journal in use: the steps' and events' keys to their run are dropped,
the rows stay, the rest of the schema is as the models say, and the step back restores them."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command
from sqlalchemy import inspect, text

from canvasflow.workflows.store.models import JournalNames
from canvasflow.workflows.store.schema import alembic_config, current_revision, head_revision, upgrade
from canvasflow.workflows.store.sql import SqlRunStore, make_engine

PREFIX = "mig_"


def _keys_to_runs(engine) -> dict[str, list[str]]:
    """The tables whose rows must name an existing run, by table: the columns of each key."""
    found: dict[str, list[str]] = {}
    for table in ("steps", "events", "signals", "run_tags"):
        for fk in inspect(engine).get_foreign_keys(PREFIX + table):
            if fk["referred_table"] == PREFIX + "runs":
                found.setdefault(table, []).extend(fk["constrained_columns"])
    return found


def _a_run_at_0005(engine, url: str) -> str:
    run_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {PREFIX}runs (id, workflow, version, status, generation, inputs, graph, "
                "created_at) VALUES (:id, 'wf', '1', 'running', 1, '{}', '{}', CURRENT_TIMESTAMP)"
            ),
            {"id": run_id},
        )
        conn.execute(
            text(
                f"INSERT INTO {PREFIX}steps (run_id, step_id, task, kind, status, attempts) "
                "VALUES (:id, 'a', 'shop.charge', 'task', 'succeeded', 1)"
            ),
            {"id": run_id},
        )
        conn.execute(
            text(
                f"INSERT INTO {PREFIX}events (run_id, event, at) "
                "VALUES (:id, 'run.created', CURRENT_TIMESTAMP)"
            ),
            {"id": run_id},
        )
    return run_id


def _upgrade_a_journal_in_use(url: str) -> None:
    names = JournalNames(PREFIX, None)
    engine = make_engine(url)
    try:
        upgrade(engine, names, "0005")
        assert _keys_to_runs(engine) == {
            "steps": ["run_id"],
            "events": ["run_id"],
            "signals": ["run_id"],
            "run_tags": ["run_id"],
        }
        old = _a_run_at_0005(engine, url)

        upgrade(engine, names)
        assert current_revision(engine, names) == head_revision() == "0006"
        assert _keys_to_runs(engine) == {"signals": ["run_id"], "run_tags": ["run_id"]}
        store = SqlRunStore(url, table_prefix=PREFIX)
        try:
            record = store.get_run(old)
            assert record is not None and [s.status for s in record.steps] == ["succeeded"]
            assert [e["event"] for e in store.events(old)] == ["run.created"]
            step = {"step_id": "b", "task": "shop.ship", "kind": "task", "queue": None, "compensation": None}
            new = store.create_run(
                run_id=uuid.uuid4().hex,
                workflow="wf",
                version="1",
                inputs={},
                graph={"steps": []},
                steps=[step],
            )
            assert [s.step_id for s in store.get_run(new).steps] == ["b"]
            with engine.connect() as conn:
                ids = dict(conn.execute(text(f"SELECT run_id, id FROM {PREFIX}events")).all())
            assert ids[new] > ids[old]  # the events' ids go on after the table's copy (SQLite)
        finally:
            store.engine.dispose()

        command.downgrade(alembic_config(engine, names), "0005")
        assert set(_keys_to_runs(engine)) == {"steps", "events", "signals", "run_tags"}
    finally:
        with engine.begin() as conn:
            for table in ("run_tags", "signals", "events", "steps", "definitions", "runs", "alembic_version"):
                conn.execute(text(f"DROP TABLE IF EXISTS {PREFIX}{table}"))
        engine.dispose()


def test_sqlite_journal_in_use_upgrades_and_steps_back(tmp_path):
    _upgrade_a_journal_in_use(f"sqlite:///{tmp_path / 'journal.db'}")


@pytest.mark.postgres
def test_postgres_journal_in_use_upgrades_and_steps_back(postgres_server):
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        _upgrade_a_journal_in_use(f"{postgres_server}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
