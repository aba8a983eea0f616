"""The journal's SQLAlchemy engine: SQLite tuned for several worker processes, or PostgreSQL
with a connection pool sized by the settings."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError

from canvasflow.config.settings import get_settings


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and NORMAL sync."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    s = get_settings()  # the pool is per process: a prefork worker has one in each child
    engine = create_engine(
        url,
        pool_size=s.database_pool_size,
        max_overflow=s.database_max_overflow,
        pool_recycle=s.database_pool_recycle,
        pool_timeout=s.database_pool_timeout,
        # one-statement writes run in autocommit (creation.py, transition_run): returning such a
        # connection needs no ROLLBACK
        skip_autocommit_rollback=True,
    )
    event.listen(engine, "connect", _custom_plans)
    event.listen(engine, "checkout", _closed_by_server)
    return engine


def _custom_plans(dbapi_conn: Any, _record: Any) -> None:
    """Plan every statement for its parameters and the tables as they are now.

    psycopg prepares a statement run five times on a connection, and PostgreSQL then keeps a
    generic plan once it looks no dearer than the custom ones: the journal's batch, prepared
    while its steps table was small, kept a sequential scan of the table (with a hash join)
    as the table grew, and nothing replans it until the table is analyzed (never, with
    autovacuum off): measured, 9.5 ms a batch of 10 steps at 50,000 rows instead of 0.5. A
    custom plan costs the planning again, not the parsing."""
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True
    try:
        dbapi_conn.execute("SET plan_cache_mode = force_custom_plan")
    finally:
        dbapi_conn.autocommit = autocommit


def _closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection is checked without a round trip: an idle PostgreSQL connection has
    nothing to read unless the server (or a proxy) closed it or said why it will (a restart, a
    crash, ``idle_session_timeout``, ``pg_terminate_backend``). Such a connection is replaced
    (SQLAlchemy retries the checkout on ``DisconnectionError``); any other is used at once.

    ``pool_pre_ping`` did the same with a ``SELECT 1`` on every checkout: four extra round
    trips per run on the hot path. A peer that vanished without closing (a cut cable) is
    noticed by neither before the statement's own timeout."""
    try:
        readable, _, _ = select.select([dbapi_conn.fileno()], [], [], 0)
    except (OSError, ValueError) as exc:  # no socket any more
        raise DisconnectionError("the journal database connection is closed") from exc
    if readable or getattr(dbapi_conn, "closed", False) or getattr(dbapi_conn, "broken", False):
        raise DisconnectionError("the journal database closed this connection; opening another")
