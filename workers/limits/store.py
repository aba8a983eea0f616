"""Limits held in Redis, for every worker at once: a rate (GCRA token bucket) and leased slots.

Each limit (a name, and the key value when the limit has ``key=``) owns two keys under one
hash tag, ``<prefix>:limit:{<name>|<key>}:tat`` and ``...:slots``, and every script touches one
limit's keys only, so they live on one Redis Cluster node. Times are the Redis server's
(``TIME`` inside the scripts), never a worker's clock.

* The rate is a token bucket kept as one number, the theoretical arrival time (GCRA): a start
  is admitted when its turn has come; a start whose turn is at most ``horizon`` ahead books that
  turn and is told when to come back (so waiting steps never race each other for a token).
* A concurrency slot is a member of a sorted set scored by its lease's expiry. The process
  holding it renews the lease (:class:`LeaseKeeper`); a process that dies stops renewing, and
  its slot is free once the lease runs out: a crash never leaks a slot.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import structlog

log = structlog.get_logger("canvasflow.limits")
ADMITTED, BOOKED, WAIT = 1, 2, 0
_KEY_LIMIT = 120


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


@dataclass(frozen=True)
class Grant:
    """The answer for one limit: ``ADMITTED``; ``BOOKED``, its turn ``wait`` seconds from now; or
    ``WAIT`` ``wait`` seconds before asking again (-1: until a slot frees, the caller polls)."""

    outcome: int
    wait: float

    @property
    def admitted(self) -> bool:
        return self.outcome == ADMITTED


def limit_base(prefix: str, name: str, key: object | None = None) -> str:
    """The Redis key base of one limit (and one key value of it): ``<prefix>:limit:{<name>|<key>}``."""
    tag = name if key is None else f"{name}|{key}"
    if len(tag) > _KEY_LIMIT:  # a long key value: its digest keeps keys short and distinct
        tag = f"{tag[:60]}~{hashlib.sha1(tag.encode()).hexdigest()}"
    return f"{prefix}:limit:{{{tag}}}"


class LimitStore:
    """The scripts on one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._acquire = client.register_script(_script("acquire.lua"))
        self._renew = client.register_script(_script("renew.lua"))

    def acquire(
        self,
        base: str,
        *,
        per_second: float | None,
        burst: int = 1,
        concurrency: int | None = None,
        lease: float = 30.0,
        horizon: float = 5.0,
        holder: str = "",
        paid: bool = False,
    ) -> Grant:
        """Take a turn of the rate and a slot of ``base`` for ``holder`` (both, or neither)."""
        interval = round(1000 / per_second) if per_second else 0
        args: list[str | int] = [
            interval,
            interval * (burst - 1),
            int(horizon * 1000),
            concurrency or 0,
            int(lease * 1000),
            holder,
            "1" if paid else "0",
        ]
        outcome, value, now = (
            int(x) for x in self._acquire(keys=[f"{base}:tat", f"{base}:slots"], args=args)
        )
        if outcome == BOOKED:
            return Grant(BOOKED, (value - now) / 1000)
        return Grant(outcome, value / 1000 if value >= 0 else -1.0)

    def release(self, base: str, holder: str) -> None:
        self.r.zrem(f"{base}:slots", holder)

    def renew(self, base: str, holders: list[str], lease: float) -> int:
        """Renew these holders' leases; returns how many were still held."""
        return int(self._renew(keys=[f"{base}:slots"], args=[int(lease * 1000), *holders]))

    def holders(self, base: str) -> list[str]:
        """The slots' holders, live or with a lease not yet purged (for operators and tests)."""
        members: list[Any] = self.r.zrange(f"{base}:slots", 0, -1)
        return [h.decode() if isinstance(h, bytes) else str(h) for h in members]


class LeaseKeeper:
    """The slots this process holds, their leases renewed by one daemon thread every ``lease / 3``."""

    def __init__(self, store: LimitStore, lease: float) -> None:
        self.store = store
        self.lease = lease
        self._held: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, base: str, holder: str) -> None:
        with self._lock:
            self._held[(base, holder)] = None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="canvasflow-limit-leases", daemon=True)
                self._thread.start()

    def release(self, base: str, holder: str) -> None:
        with self._lock:
            self._held.pop((base, holder), None)
        try:
            self.store.release(base, holder)
        except redis.RedisError as exc:  # its lease runs out by itself
            log.warning("limit slot not released; it frees when its lease expires", error=str(exc))

    def renew_once(self) -> None:
        with self._lock:
            held = list(self._held)
        by_base: dict[str, list[str]] = {}
        for base, holder in held:
            by_base.setdefault(base, []).append(holder)
        for base, holders in by_base.items():
            try:
                self.store.renew(base, holders, self.lease)
            except redis.RedisError as exc:
                log.warning("limit lease renewal failed", error=str(exc))

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            self.renew_once()

    def stop(self) -> None:
        self._stop.set()
