"""Effects exactly once in the application's own SQL database: ``once(connection)``.

A step body runs at least once (a killed worker, a broker outage, a duplicated message run it
again). When its effect is a write to the application's own database, record the step's
idempotency key in the same transaction as the effect, and a re-run skips it::

    from canvasflow import once, step

    @step(capability="orders")
    def ship(order):
        with engine.connect() as conn, once(conn) as first:
            if first:
                conn.execute(shipments.insert().values(order_id=order["id"]))
        return order

``first`` is True when this transaction recorded the key: write the effect; the key row and
the effect commit together (or roll back together when the block raises). It is False when
the key was recorded before, by a delivery whose transaction committed: skip the effect.

* ``connection``: a SQLAlchemy ``Connection`` or ``Session``, or a DB-API connection of
  ``sqlite3``, ``psycopg`` or ``psycopg2``. When a SQLAlchemy transaction is already open on it,
  ``once`` joins it and the caller commits; otherwise ``once`` begins one, commits it when the
  block ends and rolls it back when the block raises. A DB-API connection's transaction is
  always committed (or rolled back) at the end of the block, earlier writes in it included;
  an autocommit DB-API connection is refused (the key and the effect would not be atomic).
* The key is the current step's or compensation's ``context().idempotency_key``; pass
  ``key=`` to use another one (or to call ``once`` outside a step).
* The keys live in the table ``canvasflow_once`` (``table=`` to name another): ``key``
  (primary key), ``run_id``, ``step_id``, ``at`` (the database's time of the recording
  transaction). It is created on first use (``CREATE TABLE IF NOT EXISTS`` in that
  transaction), or beforehand by ``create_once_table(connection)`` (e.g. in a migration).
* Concurrent duplicates are safe: the key is inserted with ``ON CONFLICT DO NOTHING``. On
  PostgreSQL (READ COMMITTED, its default) the second transaction waits at that insert until
  the first ends: the first commits, the second sees ``first=False``; the first rolls back, the
  second sees ``first=True``. Under REPEATABLE READ or SERIALIZABLE PostgreSQL refuses the
  second with a serialization failure (it rolls back; retried, it sees ``first=False``). On
  SQLite the second writer waits for the database lock, then sees ``first=False``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import text

from canvasflow.config.errors import CanvasflowError
from canvasflow.workflows.runtime.execution import current_context

DEFAULT_TABLE = "canvasflow_once"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, run_id TEXT, step_id TEXT, "
        "at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, run_id TEXT, step_id TEXT, "
        "at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    ),
}
_INSERT = (
    "INSERT INTO {t} (key, run_id, step_id) VALUES (:key, :run_id, :step_id) ON CONFLICT (key) DO NOTHING"
)
_DBAPI_DIALECTS = {"sqlite3": "sqlite", "psycopg": "postgresql", "psycopg2": "postgresql"}


class OnceError(CanvasflowError):
    """once() cannot record the idempotency key: call it inside a step or compensation (or pass
    key=), on a SQLAlchemy Connection or Session or a non-autocommit DB-API connection of
    PostgreSQL or SQLite."""


class _Sql:
    """One way to run a statement, whatever the connection is."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.dbapi = not any(c.__module__.startswith("sqlalchemy.") for c in type(connection).__mro__)
        if self.dbapi:
            root = type(connection).__module__.split(".")[0]
            self.dialect = _DBAPI_DIALECTS.get(root, root)
            if not hasattr(connection, "cursor") or root not in _DBAPI_DIALECTS:
                raise OnceError(
                    f"once() needs a SQLAlchemy Connection or Session, or a sqlite3/psycopg/psycopg2 "
                    f"connection; got {type(connection).__module__}.{type(connection).__qualname__}"
                )
            legacy_sqlite_autocommit = root == "sqlite3" and connection.isolation_level is None
            if getattr(connection, "autocommit", False) is True or legacy_sqlite_autocommit:
                raise OnceError(
                    "once() needs the key and the effect in one transaction, and this connection "
                    "is in autocommit mode: turn autocommit off (or pass a SQLAlchemy Connection)"
                )
            self.paramstyle = getattr(sys.modules[root], "paramstyle", "qmark")
        else:
            bind = connection.get_bind() if hasattr(connection, "get_bind") else connection
            self.dialect = bind.dialect.name
        if self.dialect not in _DDL:
            raise OnceError(f"once() supports PostgreSQL and SQLite, not {self.dialect}")

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Execute ``sql`` (named ``:params``); the number of rows it changed."""
        if not self.dbapi:
            return int(self.connection.execute(text(sql), params or {}).rowcount)
        if self.paramstyle == "pyformat":
            sql = re.sub(r":(\w+)", r"%(\1)s", sql)
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params or {})
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def transaction(self) -> tuple[Any, bool]:
        """A context that begins and ends a transaction, or nothing when the caller's is open
        already; and whether it is ours (it commits when the block ends)."""
        if self.dbapi:
            return _dbapi_transaction(self.connection), True
        if self.connection.in_transaction():
            return nullcontext(), False
        return self.connection.begin(), True


@contextmanager
def _dbapi_transaction(connection: Any) -> Iterator[None]:
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


def _table(name: str) -> str:
    if not _NAME.match(name):
        raise OnceError(
            f"once() table name {name!r} is not a plain SQL name: [schema.]name of letters, digits, _"
        )
    return name


def _create(sql: _Sql, table: str) -> None:
    """CREATE TABLE IF NOT EXISTS in a savepoint: a transaction that races another one creating
    the same table (PostgreSQL raises a duplicate on its catalogue) goes on without it."""
    sql.run("SAVEPOINT canvasflow_once_ddl")
    try:
        sql.run(_DDL[sql.dialect].format(t=table))
    except Exception:
        sql.run("ROLLBACK TO SAVEPOINT canvasflow_once_ddl")
    sql.run("RELEASE SAVEPOINT canvasflow_once_ddl")


def create_once_table(connection: Any, *, table: str = DEFAULT_TABLE) -> None:
    """Create the table of used keys now (a migration may call it); once() also does on first use."""
    sql = _Sql(connection)
    with sql.transaction()[0]:
        sql.run(_DDL[sql.dialect].format(t=_table(table)))


# (database URL, table) whose creation a transaction of ours committed: once() skips the DDL there.
# A memo of this process only; a DB-API connection names no database, so its DDL always runs.
_created: set[tuple[str, str]] = set()


def _created_key(sql: _Sql, table: str) -> tuple[str, str] | None:
    conn = sql.connection
    if sql.dbapi:
        return None
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    return str(getattr(bind, "engine", bind).url), table


@contextmanager
def once(connection: Any, *, key: str | None = None, table: str = DEFAULT_TABLE) -> Iterator[bool]:
    """Record the step's idempotency key in ``connection``'s transaction; yield whether this is
    its first recording (write the effect then) or not (skip it). See the module's docstring."""
    ctx = current_context()
    if key is None:
        if ctx is None:
            raise OnceError(
                "once() takes the idempotency key from the running step's context(), and there is "
                "none here: call it inside a step or compensation, or pass key="
            )
        key = ctx.idempotency_key
    if not key:
        raise OnceError("once() was given an empty key: pass the effect's idempotency key")
    name = _table(table)
    sql = _Sql(connection)
    seen = _created_key(sql, name)
    transaction, ours = sql.transaction()
    with transaction:
        if seen not in _created:
            _create(sql, name)
        params = {"key": key, "run_id": ctx.run_id if ctx else None, "step_id": ctx.step_id if ctx else None}
        yield sql.run(_INSERT.format(t=name), params) == 1
    if ours and seen is not None:  # committed: the table exists for good
        _created.add(seen)
