"""Rows inserted with the driver's own statement: SQLAlchemy's SQL and bind processors, computed
once per table, applied without the per-call work of a Core ``insert()``.

A Core ``conn.execute(table.insert(), rows)`` looks its compiled form up by cache key and
processes each parameter through the statement's machinery on every call; for a journaled run
(a run row, ten step rows, an event) that is most of the insert's cost on SQLite. Here the
statement is compiled once (:class:`DriverInsert`), each value goes through the very bind
processor SQLAlchemy would apply (JSON serialised, timestamps formatted the same way), and the
rows are sent with ``exec_driver_sql``: the same transaction, the same error wrapping
(``sqlalchemy.exc.IntegrityError`` and the rest), the same stored bytes.

For drivers with positional parameters (SQLite's ``?``); named styles use Core inserts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table


class DriverInsert:
    """An ``INSERT`` of ``columns`` into ``table`` for ``dialect``, compiled once."""

    def __init__(self, table: Table, dialect: Dialect, columns: Sequence[str]) -> None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
        order = compiled.positiontup
        if order is None:
            raise ValueError(f"{dialect.name}: named parameters; use a Core insert")
        self.sql = str(compiled)
        self.order: list[tuple[str, Callable[[Any], Any] | None]] = [
            (c, table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) for c in order
        ]

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return [tuple(p(r[c]) if p is not None else r[c] for c, p in self.order) for r in rows]

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self.sql, self.params(rows))  # type: ignore[arg-type]


def positional(dialect: Dialect) -> bool:
    """Whether ``dialect``'s driver takes positional parameters (DriverInsert applies)."""
    return dialect.paramstyle in ("qmark", "numeric", "format")
