"""Leases: "this process is working on it", a Redis key kept alive while the work goes on.

A compensation holds a lease while its body runs. A daemon thread of the process renews
every lease it holds; when the process dies (a SIGKILLed pool child, a whole worker gone)
the lease expires within ``ttl`` seconds. A redelivered or duplicated compensation message
reads the lease: held means the first delivery is still at work (defer, do not run twice);
gone means the first delivery was interrupted (run again: at least once).

A holder is ``<machine>:<pid>:<node>``; on the same machine a dead pid is seen at once,
without waiting for the lease to expire.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog

log = structlog.get_logger("canvasflow.leases")
_MACHINE = socket.gethostname()

# a holder renews and releases only its own lease: one cut off by the network past its ttl finds
# the lease taken over, and must neither keep the new holder's alive nor delete it
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def holder_id(node: str | None = None) -> str:
    """This process, as a lease holder."""
    return f"{_MACHINE}:{os.getpid()}:{node or ''}"


def holder_dead(holder: str) -> bool:
    """True when ``holder`` ran on this machine and its process is gone (unknown elsewhere: False)."""
    machine, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if machine != _MACHINE or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Leases:
    """The leases this process holds, renewed by one daemon thread."""

    def __init__(self, client: redis.Redis, ttl: float) -> None:
        self.client = client
        self.ttl_ms = max(int(ttl * 1000), 1000)
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_script = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @contextmanager
    def hold(self, key: str, holder: str) -> Iterator[None]:
        """Keep ``key`` (already set by the caller's claim) alive until the block ends."""
        with self._lock:
            self._held[key] = holder
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew, name="canvasflow-leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)
            try:
                if not self._release(keys=[key], args=[holder]):
                    log.warning("lease was taken over while this holder was away", key=key, holder=holder)
            except redis.RedisError:  # it expires by itself
                log.warning("lease not released", key=key)

    def _renew(self) -> None:
        while True:
            self._wake.wait(self.ttl_ms / 3000)
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                for key, holder in held.items():  # one script per key: a cluster keeps each in its slot
                    self._renew_script(keys=[key], args=[self.ttl_ms, holder])
            except redis.RedisError as exc:
                log.warning("lease renewal failed", error=str(exc))
