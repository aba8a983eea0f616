"""The journal's head revision is known without Alembic, and opening a store at head loads none."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine

from canvasflow.workflows.store import schema
from canvasflow.workflows.store.models import JournalNames
from canvasflow.workflows.store.revision import HEAD, at_head, ensure_schema
from tests.layout import ROOT


def test_the_known_head_is_the_newest_migration() -> None:
    assert schema.head_revision() == HEAD


def test_a_journal_is_at_head_only_once_migrated(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'journal.db'}")
    names = JournalNames("cf_", None)
    assert not at_head(engine, names)  # no version table yet
    schema.upgrade(engine, names, "0002")  # a journal written before the newest migration
    assert not at_head(engine, names)
    ensure_schema(engine, table_prefix="cf_", schema="")
    assert at_head(engine, names)
    assert schema.current_revision(engine, names) == HEAD


OPEN_AT_HEAD = """
import sys
from canvasflow.workflows.store.sql import store_for
store_for(sys.argv[1])
assert "alembic" not in sys.modules, "opening a store at head loaded Alembic"
"""


def test_opening_a_store_at_head_loads_no_alembic(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    ensure_schema(create_engine(url), table_prefix="cf_", schema="")
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AT_HEAD, url], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
