"""Start real ``celery worker`` processes for given queues and wait until they answer.

Used by ``canvasflow worker`` (in the foreground) and ``canvasflow demo`` (in the background).
A fleet is named after its capabilities (``payments@%h``, Celery expands ``%h``) and imports
only what its capabilities need (see :func:`fleet_modules`).
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

from canvasflow.config.celery_app import DEMO_MODULES, current_app
from canvasflow.config.errors import InputError
from canvasflow.config.queues import queue_for
from canvasflow.config.settings import Settings
from canvasflow.workers.engines import registry

APP = "canvasflow.app"
CELERY = [sys.executable, "-m", "celery", "-A", APP]


def worker_args(
    queues: Sequence[str],
    *,
    concurrency: int | None = 2,
    hostname: str | None = None,
    pool: str | None = "prefork",
    loglevel: str = "INFO",
    autoscale: str | None = None,
    max_tasks_per_child: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``worker ...`` arguments: the queues, the Celery options given, events on, no gossip or mingle."""
    args = ["worker", "-Q", ",".join(queues), "-l", loglevel, "-E", "--without-gossip", "--without-mingle"]
    for flag, value in (
        ("-c", concurrency),
        ("-P", pool),
        ("-n", hostname),
        ("--autoscale", autoscale),
        ("--max-tasks-per-child", max_tasks_per_child),
    ):
        if value is not None and value != "":
            args += [flag, str(value)]
    return [*args, *extra]


def worker_command(queues: Sequence[str], *, app: str = APP, **options: Any) -> list[str]:
    """The whole command line: ``python -m celery -A canvasflow.app worker ...``."""
    return [sys.executable, "-m", "celery", "-A", app, *worker_args(queues, **options)]


def default_hostname(capabilities: Sequence[str]) -> str:
    """``<capability>@%h`` (capabilities joined by ``-``): each fleet shows under its own name."""
    return "-".join(capabilities) + "@%h"


def fleet_modules(
    capabilities: Sequence[str], s: Settings, *, control: bool = False, demo: bool = False
) -> list[str]:
    """The modules a fleet imports besides canvasflow's runtime.

    Each capability's ``CANVASFLOW_CAPABILITY_MODULES`` entry; a capability without one gets
    every workflow module (whatever declares its steps is imported from there). A control
    worker imports every workflow module (it builds runs); ``demo`` adds the demo's modules.
    """
    modules: list[str] = []
    for cap in capabilities:
        modules += s.capability_modules.get(cap, s.workflow_modules)
    if control:
        modules += s.workflow_modules
    if demo:
        modules += DEMO_MODULES
    return list(dict.fromkeys(modules))


def capability_queues(capabilities: Sequence[str]) -> list[str]:
    return [queue_for(c) for c in capabilities]


def engine_queues(capabilities: Sequence[str], engine: str) -> list[str]:
    """The engine's queue of each capability, then the shared ``cap.<capability>`` queues.

    An engine no capability declares is refused (its heartbeats would be ignored)."""
    missing = [c for c in capabilities if registry.get(f"{c}/{engine}") is None]
    if missing:
        declared = {c: [e.name for e in registry.of(c)] for c in missing}
        raise InputError(
            f"engine {engine!r} is not declared for {missing} (declared: {declared}): "
            "add it to CANVASFLOW_ENGINES or declare Engine(...) in code"
        )
    return [f"{queue_for(c)}.{engine}" for c in capabilities] + capability_queues(capabilities)


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
    app = current_app()
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
