"""One database of a shared Redis, claimed by one test session (canvasflow's own test harness,
and the fixtures of ``canvasflow.testing``).

The session claims the first database (1..n, never 0) that is empty, by ``SET <lock> <owner>
NX EX 120`` there (refreshed every 30 s by a daemon thread) plus a marker key without TTL. A
database holding the marker but no lock was left by a session that died; it is flushed and
taken. A database with other data is left alone. Releasing the claim flushes the database.

This module imports nothing from canvasflow: the harness loads it by path before the
session's settings are in place (importing ``canvasflow`` would build the Celery app).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis

LOCK_KEY = "canvasflow-test:lock"
MARKER_KEY = "canvasflow-test:session"
LOCK_TTL = 120


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
