"""The journal beside an application's tables: its own Alembic version table, a table prefix,
a PostgreSQL schema, and journals made before the version table was renamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from canvasflow.config.errors import JournalTooNew
from canvasflow.workflows.store.models import JournalNames, journal_tables
from canvasflow.workflows.store.schema import (
    autogenerate_options,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from canvasflow.workflows.store.sql import SqlRunStore, make_engine, store_for

ROOT = Path(__file__).resolve().parents[2]
APP_REVISION = "a1b2c3d4e5f6"


def _app_tables(engine) -> None:
    """Another application's Alembic history and table, created by hand."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text(f"INSERT INTO alembic_version VALUES ('{APP_REVISION}')"))
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))


def _assert_beside_the_app(engine, names: JournalNames) -> None:
    assert current_revision(engine, names) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [APP_REVISION]
        tables = set(inspect(conn).get_table_names(schema=names.schema))
        opts = autogenerate_options(names)
        diff = compare_metadata(
            MigrationContext.configure(conn, opts=opts), journal_tables(names.prefix, names.schema).metadata
        )
    assert diff == []
    assert {names.table("runs"), names.table("steps"), names.version_table} <= tables


def _journal_a_run(url: str, names: JournalNames) -> None:
    store = SqlRunStore(url, table_prefix=names.prefix, schema=names.schema)
    run_id = store.create_run(
        run_id=uuid.uuid4().hex,
        workflow="wf",
        version="1",
        inputs={},
        graph={"steps": [{"id": "a"}], "result": {"v": None}},
        steps=[{"step_id": "a", "task": "t", "kind": "task", "queue": None, "compensation": None}],
        key=f"order-{uuid.uuid4().hex[:6]}",
        tags=["beside-the-app"],
    )
    assert store.get_run(run_id).tags == ["beside-the-app"]
    store.engine.dispose()


@pytest.mark.parametrize("prefix", ["cf_", "shop_cf_"])
def test_sqlite_beside_another_apps_alembic_history(tmp_path, prefix):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = make_engine(url)
    _app_tables(engine)
    names = JournalNames(prefix)
    ensure_schema(engine, table_prefix=prefix, schema="")
    _assert_beside_the_app(engine, names)
    ensure_schema(engine, table_prefix=prefix, schema="")  # again: nothing to do
    _journal_a_run(url, names)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {prefix}runs")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("own_schema", [False, True], ids=["prefix", "schema"])
def test_postgres_beside_another_apps_alembic_history(postgres_server, own_schema):
    app_schema = f"app_{uuid.uuid4().hex[:8]}"
    journal_schema = f"cfj_{uuid.uuid4().hex[:8]}" if own_schema else None
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{app_schema}"')
    url = f"{postgres_server}?options=-csearch_path%3D{app_schema}"
    engine = make_engine(url)
    try:
        _app_tables(engine)
        names = JournalNames("app_cf_" if not own_schema else "cf_", journal_schema)
        ensure_schema(engine, table_prefix=names.prefix, schema=journal_schema or "")
        _assert_beside_the_app(engine, names)
        _journal_a_run(url, names)
        with engine.connect() as conn:
            in_app_schema = set(inspect(conn).get_table_names())
        if own_schema:  # the journal's tables (and version table) are all in its own schema
            assert in_app_schema == {"alembic_version", "orders"}
        else:
            assert "app_cf_runs" in in_app_schema and "app_cf_alembic_version" in in_app_schema
    finally:
        engine.dispose()
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            for schema in filter(None, (app_schema, journal_schema)):
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_journal_from_before_the_rename_is_adopted(tmp_path):
    """A journal whose revision is in ``alembic_version`` (as canvasflow kept it before) moves to
    ``cf_alembic_version``, keeps its runs, and is upgraded to head."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    names = JournalNames()
    upgrade(engine, names, "0001")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE cf_alembic_version RENAME TO alembic_version"))
        conn.execute(
            text(
                "INSERT INTO cf_runs (id, workflow, version, status, generation, inputs, graph, created_at) "
                "VALUES ('old-run', 'wf', '1', 'succeeded', 1, '{}', '{\"steps\": []}', '2026-01-01')"
            )
        )
    ensure_schema(engine, table_prefix="cf_", schema="")
    assert current_revision(engine, names) == head_revision()
    with engine.connect() as conn:
        assert "alembic_version" not in inspect(conn).get_table_names()
    store = SqlRunStore(url)
    old = store.get_run("old-run")
    assert old is not None and old.status == "succeeded" and old.key is None and old.tags == []
    engine.dispose()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_and_current_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    _app_tables(engine)
    env = {"CANVASFLOW_DATABASE_URL": url, "CANVASFLOW_TABLE_PREFIX": "shop_cf_"}

    before = _cli("db", "current", "--json", env=env)
    assert before.returncode == 1, before.stderr  # not at head yet
    assert json.loads(before.stdout)["current"] is None

    done = _cli("db", "upgrade", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["current"] == data["head"] == head_revision()
    assert data["version_table"] == "shop_cf_alembic_version"

    after = _cli("db", "current", env=env)
    assert after.returncode == 0 and head_revision() in after.stdout
    _assert_beside_the_app(engine, JournalNames("shop_cf_"))
    engine.dispose()


@pytest.mark.redis
@pytest.mark.worker
def test_a_run_journals_into_the_prefixed_tables(tmp_path, celery_worker_factory):
    """A worker and a client told CANVASFLOW_TABLE_PREFIX journal a whole run into those tables."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = make_engine(url)
    _app_tables(engine)
    env = {"CANVASFLOW_DATABASE_URL": url, "CANVASFLOW_TABLE_PREFIX": "shop_cf_"}
    celery_worker_factory(extra_env=env)
    out = _cli("start", "tests.child", "--input", '{"x": 1}', "--wait", "--timeout", "60", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "succeeded" and run["result"] == 102
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        steps = conn.execute(
            text("SELECT status FROM shop_cf_steps WHERE run_id = :r"), {"r": run["id"]}
        ).scalars()
        assert sorted(steps) == ["succeeded", "succeeded"]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == APP_REVISION
    assert "cf_runs" not in tables and "shop_cf_runs" in tables
    engine.dispose()


@pytest.mark.postgres
def test_upgraders_starting_together_on_postgres_all_succeed(postgres_server):
    """Workers starting at once each bring the schema to head; the advisory lock serialises them."""
    import threading

    schema = f"cfj_{uuid.uuid4().hex[:8]}"
    engines = [make_engine(postgres_server) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def upgrade_one(engine) -> None:
        barrier.wait()
        try:
            ensure_schema(engine, table_prefix="cf_", schema=schema)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade_one, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert current_revision(engines[0], JournalNames("cf_", schema)) == head_revision()
    finally:
        for e in engines:
            e.dispose()
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_journal_migrated_by_a_newer_canvasflow_is_refused_saying_what_to_do(tmp_path):
    """An older worker starting against a journal a newer release migrated gets one clear error,
    not Alembic's "Can't locate revision", and the journal is left as it was."""
    engine = make_engine(f"sqlite:///{tmp_path / 'journal.db'}")
    names = JournalNames("cf_", None)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {names.version_table} SET version_num = '0099'"))

    with pytest.raises(JournalTooNew) as refused:
        store_for(f"sqlite:///{tmp_path / 'journal.db'}", table_prefix="cf_", schema="")
    message = str(refused.value)
    assert "0099" in message and head_revision() in message and "Upgrade canvasflow" in message
    assert current_revision(engine, names) == "0099"
    engine.dispose()
