"""A local Redis Cluster of three primaries for the run state, started by the test session.

Three ``redis-server --cluster-enabled yes`` processes on free ports (each port's cluster
bus, port + 10000, free too), each in a directory of its own under the session's work
directory, keeping nothing on disk (``--save '' --appendonly no``); then ``redis-cli
--cluster create ... --cluster-replicas 0 --cluster-yes`` shares the 16384 slots among them,
and the session waits until every node says ``cluster_state:ok``. Nothing starts before first
use; :meth:`LocalCluster.stop` stops the processes. The binaries: ``redis-server`` as for the
session's own server (:func:`tests.harness.redis_server.server_binary`), ``redis-cli`` beside it
or on PATH.

This module imports nothing from canvasflow (the harness loads before the session's settings).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.harness.redis_server import RedisUnavailable, server_binary

NODES = 3
READY_TIMEOUT = 30.0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int = NODES) -> list[int]:
    """``count`` free ports whose cluster bus ports (port + 10000) are free as well."""
    import port_for

    chosen: list[int] = []
    taken: set[int] = set()  # the chosen ports and their bus ports: none may be another's
    while len(chosen) < count:
        port = port_for.select_random()
        bus = port + 10_000
        if port < 55_000 and not {port, bus} & taken and _free(port) and _free(bus):
            chosen.append(port)
            taken |= {port, bus}
    return chosen


def _cli_binary(server: str | None) -> str | None:
    if server:
        beside = Path(server).with_name("redis-cli")
        if beside.is_file():
            return str(beside)
    return shutil.which("redis-cli")


@dataclass
class LocalCluster:
    """Three primaries on ``ports`` under ``workdir``: started by :meth:`ensure_running`."""

    ports: list[int]
    workdir: Path
    server: str | None = field(default_factory=server_binary)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """canvasflow's cluster URL: every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/0"

    def node_url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    @property
    def running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def ensure_running(self) -> str:
        """The cluster's URL once every node says ``cluster_state:ok``; RedisUnavailable why not."""
        if self.running:
            return self.url
        self.stop()
        cli = _cli_binary(self.server)
        if self.server is None or cli is None:
            raise RedisUnavailable(
                "a Redis Cluster needs redis-server and redis-cli: `apt-get install redis-server` "
                "(Debian's package brings both), or set CANVASFLOW_TEST_REDIS_SERVER_BINARY"
            )
        for port in self.ports:
            self.procs.append(self._spawn(self.server, port))
        try:
            self._wait(lambda: all(self._answers(p) for p in self.ports), "the nodes to answer PING")
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            made = subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if made.returncode != 0:
                raise RedisUnavailable(
                    f"redis-cli --cluster create failed: {made.stdout[-1500:]}{made.stderr}"
                )
            self._wait(lambda: all(self._ok(p) for p in self.ports), "cluster_state:ok on every node")
        except RedisUnavailable:
            self.stop()
            raise
        return self.url

    def _spawn(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        where = self.workdir / str(port)
        where.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(where / "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(where),
            "--logfile", str(where / "redis.log"),
        ]  # fmt: skip
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _answers(self, port: int) -> bool:
        try:
            with redis.Redis.from_url(self.node_url(port), socket_timeout=1) as c:
                return bool(c.ping())
        except (redis.RedisError, OSError):
            return False

    def _ok(self, port: int) -> bool:
        try:
            with redis.Redis.from_url(self.node_url(port), socket_timeout=1) as c:
                return c.cluster("info").get("cluster_state") == "ok"
        except (redis.RedisError, OSError):
            return False

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if done():
                return
            dead = [p.args[2] for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.1)
        logs = "\n".join(
            f"{p}: {(self.workdir / str(p) / 'redis.log').read_text(errors='replace')[-600:]}"
            for p in self.ports
            if (self.workdir / str(p) / "redis.log").exists()
        )
        raise RedisUnavailable(f"Redis Cluster on ports {self.ports}: gave up waiting for {what}\n{logs}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        for port in self.ports:  # a restart creates the cluster afresh
            (self.workdir / str(port) / "nodes.conf").unlink(missing_ok=True)


def plan_cluster(workdir: Path) -> LocalCluster:
    """A cluster on free ports under ``workdir``, not started yet."""
    return LocalCluster(cluster_ports(), workdir)
