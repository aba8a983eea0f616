"""once(connection): an effect in the application's own database happens once per idempotency key,
on SQLite and PostgreSQL, through SQLAlchemy and plain DB-API connections, and under a race."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from canvasflow import CanvasflowError, once
from canvasflow.workflows.authoring.once import OnceError, create_once_table
from canvasflow.workflows.runtime.execution import ExecutionContext, executing

Connect = Callable[[], AbstractContextManager[Any]]
KINDS = ["sqlalchemy", "session", "dbapi"]


def sa_url(postgres_url: str) -> str:
    return postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str]]:
    """(dialect, URL) of a database with an ``effects`` table, and a fresh keys table name."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(sa_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS effects (key TEXT, what TEXT)"))
        conn.execute(sa.text("DELETE FROM effects"))
    engine.dispose()
    yield request.param, url


def connector(kind: str, dialect: str, url: str) -> Connect:
    """A way to open a connection of ``kind`` to the database, as an application would."""
    if kind == "dbapi":
        if dialect == "sqlite":
            return lambda: sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10)
        return lambda: psycopg.connect(url)
    engine = sa.create_engine(sa_url(url))
    if kind == "session":
        return lambda: Session(engine)
    return engine.connect


def run_sql(conn: Any, sql: str, params: dict[str, Any]) -> None:
    if isinstance(conn, sa.Connection | Session):
        conn.execute(sa.text(sql), params)
        return
    if isinstance(conn, psycopg.Connection):
        sql = sql.replace(":key", "%(key)s").replace(":what", "%(what)s")
    conn.execute(sql, params)


def effects(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(sa_url(url))
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT key, what FROM effects ORDER BY what"))]
    engine.dispose()
    return rows  # type: ignore[return-value]


def ship(connect: Connect, key: str | None, what: str, fail: bool = False, **options: Any) -> bool:
    """A step body's effect: write a row of ``effects`` under ``once``; True when it wrote it."""
    with connect() as conn, once(conn, key=key, **options) as first:
        if first:
            run_sql(conn, "INSERT INTO effects (key, what) VALUES (:key, :what)", {"key": key, "what": what})
        if fail:
            raise RuntimeError("the body failed after its effect")
    return first


@pytest.mark.parametrize("kind", KINDS)
def test_the_effect_is_written_once_however_often_the_body_runs(database, kind):
    dialect, url = database
    connect, key = connector(kind, dialect, url), f"run-{uuid.uuid4().hex}:1.ship:1"
    table = f"once_{kind}"
    assert [ship(connect, key, f"try{i}", table=table) for i in range(3)] == [True, False, False]
    assert effects(url) == [(key, "try0")]
    assert ship(connect, f"{key}-other", "other", table=table) is True  # another key: its own effect
    with sa.create_engine(sa_url(url)).connect() as conn:
        keys = conn.execute(sa.text(f"SELECT key, at FROM {table} ORDER BY key")).all()
    assert [k for k, _ in keys] == [key, f"{key}-other"] and all(at is not None for _, at in keys)


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_that_raises_records_neither_the_key_nor_the_effect(database, kind):
    dialect, url = database
    connect, key = connector(kind, dialect, url), uuid.uuid4().hex
    with pytest.raises(RuntimeError, match="failed after its effect"):
        ship(connect, key, "rolled-back", fail=True)
    assert effects(url) == []
    assert ship(connect, key, "second") is True  # the re-run writes it
    assert effects(url) == [(key, "second")]


def test_once_joins_a_transaction_the_caller_opened_and_the_caller_commits(database):
    _, url = database
    engine = sa.create_engine(sa_url(url))
    key = uuid.uuid4().hex
    with engine.connect() as conn:
        outer = conn.begin()
        with once(conn, key=key) as first:
            assert first
            conn.execute(sa.text("INSERT INTO effects VALUES (:k, 'joined')"), {"k": key})
        outer.rollback()  # the caller's rollback takes the key with it
    assert effects(url) == []
    with engine.connect() as conn, conn.begin(), once(conn, key=key) as first:
        assert first
        conn.execute(sa.text("INSERT INTO effects VALUES (:k, 'joined')"), {"k": key})
    assert effects(url) == [(key, "joined")]


def test_inside_a_step_the_key_run_and_step_come_from_its_context(database):
    _, url = database
    engine = sa.create_engine(sa_url(url))
    create_once_table(engine.connect(), table="once_ctx")  # the documented call, e.g. in a migration
    ctx = ExecutionContext(
        run_id="r1", step_id="2.ship", generation=1, attempt=1, idempotency_key="r1:2.ship:1"
    )
    with executing(ctx):
        assert ship(engine.connect, None, "ctx", table="once_ctx") is True
        assert ship(engine.connect, None, "ctx again", table="once_ctx") is False
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key, run_id, step_id FROM once_ctx")).all()
    assert [tuple(r) for r in rows] == [("r1:2.ship:1", "r1", "2.ship")]


def test_outside_a_step_without_a_key_once_says_what_to_do(tmp_path):
    conn = sqlite3.connect(tmp_path / "app.db")
    with pytest.raises(CanvasflowError, match="inside a step or compensation, or pass key="), once(conn):
        pass
    with pytest.raises(OnceError, match="empty key"), once(conn, key=""):
        pass
    auto = sqlite3.connect(tmp_path / "app.db", isolation_level=None)  # autocommit: every statement alone
    with pytest.raises(OnceError, match="autocommit"), once(auto, key="k"):
        pass
    with pytest.raises(OnceError, match="not a plain SQL name"), once(conn, key="k", table="x; DROP"):
        pass


@pytest.mark.postgres
@pytest.mark.parametrize("winner", ["commits", "rolls back"])
def test_two_concurrent_transactions_with_one_key_on_postgres(postgres_url, winner):
    """The second transaction waits at the key's insert while the first is open; when the first
    commits it sees first=False, when the first rolls back it sees first=True and writes."""
    engine = sa.create_engine(sa_url(postgres_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS race_effects (key TEXT, who TEXT)"))
    key, inside, release = uuid.uuid4().hex, threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first_transaction() -> None:
        try:
            with engine.connect() as conn, once(conn, key=key, table="once_race") as first:
                seen["a"] = first
                conn.execute(sa.text("INSERT INTO race_effects VALUES (:k, 'a')"), {"k": key})
                inside.set()
                release.wait(10)
                if winner == "rolls back":
                    raise RuntimeError("a fails")
        except RuntimeError:
            pass

    def second_transaction() -> None:
        with engine.connect() as conn, once(conn, key=key, table="once_race") as first:
            seen["b"] = first
            seen["b_at"] = time.monotonic()  # type: ignore[assignment]
            if first:
                conn.execute(sa.text("INSERT INTO race_effects VALUES (:k, 'b')"), {"k": key})

    a = threading.Thread(target=first_transaction)
    a.start()
    assert inside.wait(10)
    b = threading.Thread(target=second_transaction)
    b.start()
    time.sleep(1.0)
    assert "b" not in seen, "the second transaction went past the key while the first was open"
    released = time.monotonic()
    release.set()
    a.join(10)
    b.join(10)
    assert seen["a"] is True and seen["b_at"] >= released
    with engine.connect() as conn:
        who = [r[0] for r in conn.execute(sa.text("SELECT who FROM race_effects WHERE key = :k"), {"k": key})]
    if winner == "commits":
        assert seen["b"] is False and who == ["a"]
    else:
        assert seen["b"] is True and who == ["b"]


@pytest.mark.postgres
def test_an_autocommit_psycopg_connection_is_refused_with_what_to_do(postgres_url):
    auto = psycopg.connect(postgres_url, autocommit=True)
    with pytest.raises(OnceError, match="autocommit mode: turn autocommit off"), once(auto, key="k"):
        pass
    auto.close()
    with (
        psycopg.connect(postgres_url) as conn,
        once(conn, key=uuid.uuid4().hex, table="once_psycopg") as first,
    ):
        assert first  # the same connection without autocommit records the key
