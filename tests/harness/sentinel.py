"""A Redis Sentinel deployment of the test's own: a primary, a replica and three sentinels, each a
local ``redis-server`` process (``--sentinel CONF`` runs a sentinel) on a free port.

:meth:`SentinelGroup.failover` asks for an orderly switch (``SENTINEL FAILOVER``);
:meth:`SentinelGroup.kill_primary` SIGKILLs the primary so the sentinels must notice it down and
promote the replica, losing whatever the replica had not received. The URLs point Celery's
broker and result backend (``sentinel://``) and the state Redis (``redis+sentinel://``) at the
group. :meth:`SentinelGroup.close` stops every process; use it as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import redis

from canvasflow.config.local_redis import free_port, redis_server_binary

MASTER = "cfmaster"


class SentinelGroup:
    def __init__(self, workdir: Path, master: str = MASTER) -> None:
        self.workdir = workdir
        self.master = master
        self.servers = {name: free_port() for name in ("a", "b")}  # a starts as primary
        self.sentinels = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        workdir.mkdir(parents=True, exist_ok=True)

    # -- URLs ------------------------------------------------------------------------------
    def broker_url(self, db: int = 0) -> str:
        """Celery's form, for the broker and the result backend."""
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinels) + f"/{db}"

    def state_url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{db}?master_name={self.master}"

    def env(self) -> dict[str, str]:
        """Settings (for ``settings_env``) that put broker, results and state behind the group."""
        return {
            "broker_url": self.broker_url(),
            "result_backend": self.broker_url(),
            "state_url": self.state_url(),
            "sentinel_master": self.master,
        }

    # -- processes -------------------------------------------------------------------------
    def start(self) -> SentinelGroup:
        a, b = self.servers["a"], self.servers["b"]
        self._server("a", a)
        self._server("b", b, "--replicaof", "127.0.0.1", str(a))
        for i, port in enumerate(self.sentinels):
            conf = self.workdir / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {self.master} 127.0.0.1 {a} 2\n"
                f"sentinel down-after-milliseconds {self.master} 1000\n"
                f"sentinel failover-timeout {self.master} 4000\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
            self._spawn(f"sentinel{i}", [str(conf), "--sentinel"], port)
        self._wait(self._ready, 30, "the sentinels did not see the replica and each other")
        return self

    def _server(self, name: str, port: int, *extra: str) -> None:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.workdir / name)]
        (self.workdir / name).mkdir(exist_ok=True)
        self._spawn(name, [*args, "--appendonly", "yes", "--save", "", *extra], port)

    def _spawn(self, name: str, args: list[str], port: int) -> None:
        binary = redis_server_binary()
        assert binary, "no redis-server binary (apt-get install redis-server)"
        with open(self.workdir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT)
        self._wait(lambda: self._ping(port), 15, f"{name} did not start on port {port}")

    def _ping(self, port: int) -> bool:
        with contextlib.suppress(redis.RedisError, OSError):
            return bool(redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        return False

    def _ready(self) -> bool:
        s = self.sentinel(0)
        replicas = s.sentinel_slaves(self.master)
        others = cast(list[Any], s.sentinel_sentinels(self.master))
        up = [
            r for r in replicas if "s_down" not in r.get("flags", "") and r.get("master-link-status") == "ok"
        ]
        return len(up) >= 1 and len(others) >= 2

    @staticmethod
    def _wait(probe, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if probe():
                    return
            time.sleep(0.1)
        raise AssertionError(what)

    def sentinel(self, i: int) -> redis.Redis:
        return redis.Redis(port=self.sentinels[i], socket_timeout=2, decode_responses=True)

    # -- the primary -----------------------------------------------------------------------
    def primary_port(self) -> int:
        address = self.sentinel(0).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        return int(address[1])

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port(), socket_timeout=2)

    def failover(self, timeout: float = 30) -> int:
        """``SENTINEL FAILOVER``: the replica becomes primary; returns its port once it takes writes."""
        old = self.primary_port()
        self.sentinel(0).execute_command("SENTINEL", "FAILOVER", self.master)
        return self._promoted(old, timeout)

    def kill_primary(self, lose_for: float = 0.0, timeout: float = 30) -> tuple[int, int]:
        """SIGKILL the primary; returns the promoted replica's port once it takes writes, and how
        many bytes of the primary's replication stream it never received.

        ``lose_for`` > 0 makes the asynchronous replication window certain: the replica is
        stopped (SIGSTOP, shorter than the sentinels' down-after), its link dropped by the
        primary, and the primary takes writes alone for that long before it is killed."""
        old = self.primary_port()
        name = next(n for n, p in self.servers.items() if p == old)
        replica = self.processes[next(n for n in self.servers if n != name)]
        primary = redis.Redis(port=old, socket_timeout=2)
        if lose_for > 0:
            os.kill(replica.pid, signal.SIGSTOP)
            try:
                primary.client_kill_filter(_type="replica")
                time.sleep(lose_for)
                written = int(primary.info("replication")["master_repl_offset"])
                self.processes[name].kill()
            finally:
                os.kill(replica.pid, signal.SIGCONT)
        else:
            written = int(primary.info("replication")["master_repl_offset"])
            self.processes[name].kill()
        self.processes[name].wait(5)
        port = self._promoted(old, timeout)
        # the promoted replica's offset where it left the old primary's history
        info = redis.Redis(port=port, socket_timeout=2).info("replication")
        kept = int(info.get("second_repl_offset", -1))
        kept = kept - 1 if kept > 0 else int(info["master_repl_offset"])
        return port, max(written - kept, 0)

    def _promoted(self, old: int, timeout: float) -> int:
        def moved() -> bool:
            port = self.primary_port()
            return (
                port != old
                and redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master"
            )

        self._wait(moved, timeout, f"no replica was promoted within {timeout:g}s")
        return self.primary_port()

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
