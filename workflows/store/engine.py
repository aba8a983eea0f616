"""The journal's SQLAlchemy engine: SQLite tuned for several worker processes, or PostgreSQL
with a connection pool sized by the settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event

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
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=s.database_pool_size,
        max_overflow=s.database_max_overflow,
        pool_recycle=s.database_pool_recycle,
        pool_timeout=s.database_pool_timeout,
        # one-statement writes run in autocommit (creation.py, transition_run): returning such a
        # connection needs no ROLLBACK
        skip_autocommit_rollback=True,
    )
