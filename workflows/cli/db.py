"""``canvasflow db upgrade|current``: the journal's schema, migrated with Alembic."""

from __future__ import annotations

import argparse

from sqlalchemy.engine import make_url

from canvasflow.config.settings import get_settings
from canvasflow.workflows.cli._common import AddCommand, emit
from canvasflow.workflows.store.schema import current_revision, head_revision, names_for, upgrade
from canvasflow.workflows.store.sql import make_engine


def cmd_db(args: argparse.Namespace) -> int:
    """``db upgrade``: run the journal's migrations; ``db current``: its revision and the head."""
    settings = get_settings()
    names = names_for()
    engine = make_engine(settings.database_url)
    try:
        if args.action == "upgrade":
            upgrade(engine, names, args.revision)
        data = {
            "database": make_url(settings.database_url).render_as_string(hide_password=True),
            "table_prefix": names.prefix,
            "schema": names.schema,
            "version_table": names.version_table,
            "current": current_revision(engine, names),
            "head": head_revision(),
        }
    finally:
        engine.dispose()
    emit(
        args,
        data,
        lambda: (
            f"{data['database']}: {data['current'] or 'empty'} (head {data['head']}, "
            f"tables {names.prefix}*{' in schema ' + str(names.schema) if names.schema else ''})"
        ),
    )
    return 0 if args.action == "upgrade" or data["current"] == data["head"] else 1


def configure_parsers(add: AddCommand) -> None:
    sp = add("db", cmd_db)
    sp.add_argument("action", choices=["upgrade", "current"], help="upgrade the tables, or show the revision")
    sp.add_argument("--revision", default="head", help="upgrade to this revision (default head)")
