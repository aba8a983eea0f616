"""A user's project outside this repository, for the adoption tests: its modules written to a
temporary directory, and worker processes started from there (as a user would, by the
``canvasflow`` CLI or ``celery -A``), wrapped in the harness's :class:`WorkerProcess`.

The project's processes run with the project directory as their working directory and
``PYTHONPATH`` set to this worktree only, so that ``canvasflow`` is this checkout's code
(the shared virtualenv's editable install points at another one) and the project's own
modules are found the way the tool under test finds them, not through PYTHONPATH.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.harness.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("canvasflow")  # the console script pip installed


def token() -> str:
    return uuid.uuid4().hex[:8]


def write_project(where: Path, files: Mapping[str, str]) -> Path:
    """Write ``{relative path: source}`` (dedented) under ``where``; returns ``where``."""
    for rel, source in files.items():
        path = where / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    return where


def project_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The session's environment (its CANVASFLOW_* settings), this worktree on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(extra or {})}


def spawn(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_dir: Path, hostname: str
) -> WorkerProcess:
    """Start ``command`` (a worker, directly or through the CLI, which execs it) in its own session."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{hostname}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    return WorkerProcess(hostname, process, log_path, hostname)


def cli_worker(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_dir: Path, hostname: str
) -> WorkerProcess:
    """``canvasflow worker ARGS`` from ``cwd`` (the CLI execs celery: same pid)."""
    return spawn([str(CLI), "worker", *args], cwd=cwd, env=env, log_dir=log_dir, hostname=hostname)


def run_cli(args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=60
    )


def node(name: str) -> str:
    """The node name Celery gives ``name@%h`` on this machine."""
    return f"{name}@{socket.gethostname()}"


def readme_blocks(containing: str) -> list[str]:
    """The README's ```python blocks that contain ``containing``, in order."""
    text = (ROOT / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    return [b for b in blocks if containing in b]
