"""A test host of the test's own: a network namespace joined to this one by a veth pair.

``169.254.<n>.1`` is this side of the pair, ``169.254.<n>.2`` the namespace's; a server bound on
the first is reached from inside the namespace through the pair, and from nowhere else.
:meth:`TestHost.cut` takes this side of the link down (packets are dropped, no connection is
reset: the processes inside see a silent network, as behind a failed switch) and
:meth:`TestHost.heal` brings it back. :meth:`TestHost.worker` starts ``celery worker`` inside with
``ip netns exec``. Everything is removed on :meth:`TestHost.close` (the namespace, and with it
the pair). Needs root (``ip netns add``); :func:`partitioned_host` skips, saying why, where that is
refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.harness.workers import CeleryProcess, WorkerProcess, unique_hostname


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class TestHost:
    __test__ = False  # not a test class

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"cf-{tag}"
        self.outer_dev, self.inner_dev = f"cfo{tag}", f"cfi{tag}"
        n = int(tag[:2], 16) % 250 + 1
        self.outer_ip, self.inner_ip = f"169.254.{n}.1", f"169.254.{n}.2"
        self.workers: list[WorkerProcess] = []

    def create(self) -> TestHost:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.outer_dev, "type", "veth", "peer", "name", self.inner_dev)
            _ip("link", "set", self.inner_dev, "netns", self.name)
            _ip("addr", "add", f"{self.outer_ip}/30", "dev", self.outer_dev)
            _ip("link", "set", self.outer_dev, "up")
            for args in (
                ("addr", "add", f"{self.inner_ip}/30", "dev", self.inner_dev),
                ("link", "set", self.inner_dev, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", self.name, "ip", *args)
        except BaseException:
            self.close()
            raise
        return self

    def cut(self) -> None:
        """Drop every packet between the namespace and this host (no reset: a silent network)."""
        _ip("link", "set", self.outer_dev, "down")

    def heal(self) -> None:
        _ip("link", "set", self.outer_dev, "up")

    def worker(
        self,
        *,
        log_dir: Path,
        cwd: Path,
        env: Mapping[str, str],
        queues: Sequence[str],
        pool: str = "solo",
        concurrency: int = 1,
    ) -> WorkerProcess:
        """``celery worker`` inside the namespace (not waited for; see ``wait_ready``)."""
        from canvasflow.workers.fleet import CELERY, worker_args  # the session's settings are in place

        hostname = unique_hostname("partitioned")
        args = worker_args(queues, concurrency=concurrency, pool=pool, hostname=hostname, loglevel="INFO")
        base = CeleryProcess.spawn(
            hostname,
            args,
            log_path=log_dir / f"{hostname}.log",
            cwd=cwd,
            env={**os.environ, **env},
            program=["ip", "netns", "exec", self.name, *CELERY],
        )
        w = WorkerProcess(base.name, base.process, base.log_path, hostname, tuple(queues))
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(timeout=5)
            with contextlib.suppress(Exception):
                w.kill_group()
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", self.outer_dev)  # gone already when the namespace took its peer with it
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("netns", "del", self.name)


@contextlib.contextmanager
def partitioned_host() -> Iterator[TestHost]:
    """A :class:`TestHost`, removed afterwards; skips the test when namespaces are refused here."""
    probe = subprocess.run(["ip", "netns", "add", f"cf-probe-{os.getpid()}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here (`ip netns add`: {probe.stderr.strip()})")
    subprocess.run(["ip", "netns", "del", f"cf-probe-{os.getpid()}"], capture_output=True)
    host = TestHost().create()
    try:
        yield host
    finally:
        host.close()
