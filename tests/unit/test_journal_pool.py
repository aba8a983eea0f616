"""The journal's PostgreSQL connection pool takes its sizes from the settings (no connection is
made: SQLAlchemy opens connections on first use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canvasflow.config.settings import get_settings
from canvasflow.workflows.store.sql import make_engine

URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_pool_has_the_configured_sizes(fresh_settings: pytest.MonkeyPatch) -> None:
    fresh_settings.setenv("CANVASFLOW_DATABASE_POOL_SIZE", "3")
    fresh_settings.setenv("CANVASFLOW_DATABASE_MAX_OVERFLOW", "1")
    fresh_settings.setenv("CANVASFLOW_DATABASE_POOL_RECYCLE", "600")
    fresh_settings.setenv("CANVASFLOW_DATABASE_POOL_TIMEOUT", "2.5")
    engine = make_engine(URL)
    assert engine.pool.size() == 3
    assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
    assert engine.pool._recycle == 600
    assert engine.pool._timeout == 2.5  # type: ignore[attr-defined]
    engine.dispose()


def test_pool_defaults(fresh_settings: pytest.MonkeyPatch) -> None:
    for name in ("SIZE", "RECYCLE", "TIMEOUT"):
        fresh_settings.delenv(f"CANVASFLOW_DATABASE_POOL_{name}", raising=False)
    fresh_settings.delenv("CANVASFLOW_DATABASE_MAX_OVERFLOW", raising=False)
    engine = make_engine(URL)
    assert (engine.pool.size(), engine.pool._max_overflow, engine.pool._recycle) == (5, 10, 1800)  # type: ignore[attr-defined]
    engine.dispose()
