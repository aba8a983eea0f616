"""Real ``celery`` subprocesses for tests: spawn one with its output in a log file, wait
until a worker answers a ping, kill it (or one of its pool children), stop it.

Each process runs in its own session (process group), so :meth:`CeleryProcess.stop` can
take its pool children down with it even after the main process was killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_QUEUES = ("cap.demo", "canvasflow", "canvasflow.control")


@dataclass(repr=False)
class CeleryProcess:
    """A ``python -m celery -A config.celery_app ...`` subprocess writing to ``log_path``."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopping: bool = field(default=False, init=False)  # TERM sent (begin_stop)

    @classmethod
    def spawn(
        cls,
        name: str,
        args: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str],
        program: Sequence[str] | None = None,
    ) -> CeleryProcess:
        """Start ``celery -A canvasflow.app ARGS`` (or ``PROGRAM ARGS``: a command that execs celery)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        from canvasflow.workers.fleet import CELERY

        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [*(program or CELERY), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**env, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        return cls(name, process, log_path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} log={self.log_path}>"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def read_log(self, offset: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process only. Its pool children are left as they are: a
        child in the middle of a task may go on running it for a while as an orphan."""
        if self.alive:
            os.kill(self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the main process and its pool together, as a crashed host would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def begin_stop(self) -> None:
        """TERM (warm shutdown) without waiting: several workers then stop side by side."""
        if self.alive and not self._stopping:
            self.process.send_signal(signal.SIGTERM)
            self._stopping = True

    def stop(self, timeout: float = 10.0) -> int | None:
        """TERM (warm shutdown), then KILL the whole process group after ``timeout`` seconds;
        also KILLs children that outlived a main process killed earlier. Returns the exit code."""
        if self.alive:
            self.begin_stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill_group(signal.SIGKILL)  # also any child that outlived its main process
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None


def child_pids(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (read from /proc, Linux)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


class WorkerNotReady(RuntimeError):
    """The worker died or did not answer a ping in time (the message carries its log)."""


@dataclass(repr=False)
class WorkerProcess(CeleryProcess):
    """A ``celery worker`` subprocess, known to the broker as ``hostname``."""

    hostname: str = ""
    queues: tuple[str, ...] = DEFAULT_QUEUES

    @property
    def pool_pids(self) -> list[int]:
        """The pool's child processes (prefork); empty for solo/threads pools."""
        return child_pids(self.pid)

    def kill_child(self, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to one pool child; returns its pid."""
        children = self.pool_pids
        if not children:
            raise RuntimeError(f"worker {self.hostname} has no pool child to kill")
        os.kill(children[0], sig)
        return children[0]

    def ping(self, timeout: float = 0.5) -> bool:
        from canvasflow.config.celery_app import app

        return bool(app.control.ping(destination=[self.hostname], timeout=timeout))

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        """Return once the worker answers a ping; WorkerNotReady (with its log) otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise WorkerNotReady(
                    f"worker {self.hostname} exited with code {self.process.returncode} before it "
                    f"was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ping():
                return self
        raise WorkerNotReady(
            f"worker {self.hostname} did not answer a ping within {timeout:g}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )


def unique_hostname(label: str = "worker") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@canvasflow-test"


def spawn_worker(
    *,
    log_dir: Path,
    cwd: Path,
    env: Mapping[str, str],
    queues: Sequence[str] = DEFAULT_QUEUES,
    concurrency: int = 2,
    pool: str = "prefork",
    hostname: str | None = None,
) -> WorkerProcess:
    """Start ``celery worker`` (events on, no gossip or mingle); does not wait for it."""
    from canvasflow.workers.fleet import worker_args  # at call time: the session's settings are in place

    hostname = hostname or unique_hostname()
    args = worker_args(queues, concurrency=concurrency, pool=pool, hostname=hostname, loglevel="INFO")
    base = CeleryProcess.spawn(hostname, args, log_path=log_dir / f"{hostname}.log", cwd=cwd, env=env)
    return WorkerProcess(base.name, base.process, base.log_path, hostname, tuple(queues))
