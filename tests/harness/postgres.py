"""A real PostgreSQL for the store tests: the one at $CANVASFLOW_TEST_POSTGRES_URL (default
127.0.0.1:5432, database ``test``) when it answers; else the machine's own cluster started
with Debian's ``pg_ctlcluster``; else one started by pytest-postgresql's executor in a
temporary directory (needs PostgreSQL's binaries and a non-root user). Each
test session works in its own schema, dropped at the end. Never skips: when no server can
be had, the tests that need one fail and say why."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from glob import glob

import psycopg
import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False


def _pg_ctl() -> str | None:
    found = shutil.which("pg_ctl") or sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _start_system_cluster() -> bool:
    """Start the machine's own stopped cluster (Debian's pg_ctlcluster switches to the postgres user)."""
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        return False
    for version in sorted(os.listdir("/etc/postgresql")):
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
        if subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0:
            for _ in range(50):
                if _answers(DEFAULT_URL):
                    return True
                time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("CANVASFLOW_TEST_POSTGRES_URL", DEFAULT_URL)
    if _answers(url) or (url == DEFAULT_URL and _start_system_cluster() and _answers(url)):
        yield url
        return
    pg_ctl = _pg_ctl()
    if pg_ctl is None or os.geteuid() == 0:
        pytest.fail(
            f"PostgreSQL at {url} does not answer and none can be started here "
            f"({'no pg_ctl found' if pg_ctl is None else 'PostgreSQL will not run as root'}): "
            "start one (apt-get install postgresql) or set CANVASFLOW_TEST_POSTGRES_URL"
        )
    from port_for import get_port
    from pytest_postgresql.executor import PostgreSQLExecutor

    port = get_port(None)
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=port,
        user="postgres",
        password="",
        options="",
        dbname="test",
        startparams="-w",
        datadir=str(tmp_path_factory.mktemp("pgdata")),
        unixsocketdir=str(tmp_path_factory.mktemp("pgsock")),
        logfile=str(tmp_path_factory.mktemp("pglog") / "postgres.log"),
        postgres_options="",
    )
    with executor:
        executor.wait_for_postgres()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
            c.execute("create database test")
        yield f"postgresql://postgres@127.0.0.1:{port}/test"


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections use a schema of this session's own."""
    schema = f"cf_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    sep = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'drop schema "{schema}" cascade')
