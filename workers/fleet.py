"""Start real ``celery worker`` processes for given queues and wait until they answer.

Used by ``canvasflow worker`` (in the foreground) and ``canvasflow demo`` (in the background).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from canvasflow.config.queues import queue_for

CELERY = [sys.executable, "-m", "celery", "-A", "canvasflow.app"]


def worker_args(
    queues: Sequence[str],
    *,
    concurrency: int = 2,
    hostname: str | None = None,
    pool: str = "prefork",
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
) -> list[str]:
    """``worker ...`` arguments: the queues, pool and size, task events on, no gossip or mingle."""
    args = [
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-l",
        loglevel,
        "-E",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        args += ["-n", hostname]
    return [*args, *extra]


def worker_command(queues: Sequence[str], **options: Any) -> list[str]:
    """The whole command line: ``python -m celery -A config.celery_app worker ...``."""
    return [*CELERY, *worker_args(queues, **options)]


def capability_queues(capabilities: Sequence[str]) -> list[str]:
    return [queue_for(c) for c in capabilities]


def spawn_worker(
    queues: Sequence[str],
    *,
    log_path: Path,
    hostname: str,
    concurrency: int = 2,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        worker_command(queues, concurrency=concurrency, hostname=hostname),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )


def wait_ready(hostname: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ping the worker by name until it answers; RuntimeError when it dies or stays silent."""
    from canvasflow.config.celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {hostname} exited with code {proc.returncode}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return
    raise RuntimeError(f"worker {hostname} did not answer a ping within {timeout:g}s")


def stop_worker(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Warm shutdown (TERM), then KILL the whole process group if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
