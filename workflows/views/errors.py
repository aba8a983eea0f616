"""What an error means to an operator: one line saying what to do, no traceback.

:func:`explain` turns an exception into that line, the name of its kind and an exit status:
2 for anything the operator can fix (a CanvasflowError, a database or Redis that does not
answer, a missing driver), 1 for an unexpected error (``--debug`` shows its traceback). The
``canvasflow`` command prints it; the console answers it over HTTP (``console/actions.py``).
"""

from __future__ import annotations

from typing import NamedTuple

from redis.exceptions import ConnectionError as RedisDown
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from canvasflow.config.errors import CanvasflowError, as_canvasflow_error, first_line
from canvasflow.config.settings import get_settings, redact

DRIVERS = {
    "psycopg": "pip install 'psycopg[binary]' (PostgreSQL)",
    "psycopg2": "pip install psycopg2-binary, or use postgresql+psycopg:// (pip install 'psycopg[binary]')",
    "pymysql": "pip install pymysql (MySQL)",
    "MySQLdb": "pip install mysqlclient (MySQL)",
    "asyncpg": "canvasflow needs a synchronous driver: use postgresql+psycopg:// (psycopg[binary])",
}


class Explained(NamedTuple):
    message: str
    kind: str
    status: int


def _database_url() -> str:
    try:
        return redact(get_settings().database_url)
    except CanvasflowError:
        return "CANVASFLOW_DATABASE_URL"


def explain(exc: BaseException) -> Explained:
    """The line to print for ``exc``, the name of its kind, and the exit status (a library's
    error that means one of canvasflow's, e.g. a broker that does not answer, as that one)."""
    exc = as_canvasflow_error(exc)
    if isinstance(exc, CanvasflowError):
        return Explained(str(exc), type(exc).__name__, 2)
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in DRIVERS:
        driver = exc.name.split(".")[0]
        return Explained(
            f"the database driver {driver!r} for {_database_url()} is not installed: {DRIVERS[driver]}",
            "DriverMissing",
            2,
        )
    if isinstance(exc, DBAPIError | ArgumentError | NoSuchModuleError):
        return Explained(
            f"the journal database {_database_url()} cannot be used ({type(exc).__name__}: "
            f"{first_line(getattr(exc, 'orig', None) or exc)}): check CANVASFLOW_DATABASE_URL, that the "
            "database runs, and create its tables with `canvasflow db upgrade`",
            "DatabaseUnavailable",
            2,
        )
    if isinstance(exc, RedisDown | RedisTimeout):
        return Explained(
            f"Redis does not answer ({first_line(exc)}): start it, or point CANVASFLOW_STATE_URL / "
            "CANVASFLOW_RESULT_BACKEND at one that runs",
            "RedisUnavailable",
            2,
        )
    return Explained(
        f"unexpected {type(exc).__name__}: {first_line(exc)} (run with --debug for the traceback)",
        type(exc).__name__,
        1,
    )
