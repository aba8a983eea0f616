"""The bench's machinery: worker subprocesses, the client's ways to run a canvas, samples.

Nothing from ``config/`` may be imported at module level: run.py sets the environment first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "BENCHMARKS.md"
REDIS_URL = os.environ.get("CANVASFLOW_BENCH_REDIS", "redis://127.0.0.1:6379/12")
PG_URL = os.environ.get("CANVASFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
QUEUES = "cap.bench,canvasflow,canvasflow.control"
CONCURRENCY = 2
SIGNAL_TIMEOUT = 300.0
NOTES = "## Notes"  # this heading and what follows it survive a rewrite of the doc
LABELS = {
    "raw": "raw celery",
    "cf": "canvasflow",
    "cf_pg": "canvasflow/pg",
    "plain": "unrouted",
    "routed": "routed",
    "off": "telemetry off",
    "on": "telemetry on",
}


# -- infrastructure (nothing from config/ may be imported before the environment is set) ------
def postgres_answers(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


class Worker:
    """One ``celery worker`` subprocess (its own session, so it can be stopped as a group)."""

    def __init__(
        self, workdir: Path, env: dict[str, str], label: str, queues: str, concurrency: int = CONCURRENCY
    ) -> None:
        self.env, self.label, self.queues, self.workdir = env, label, queues, workdir
        self.concurrency = concurrency
        self.hostname = f"bench-{label}-{os.getpid()}@{socket.gethostname()}"
        self.log = workdir / f"worker-{label}.log"
        from canvasflow.workers.fleet import worker_command

        cmd = worker_command(
            queues.split(","),
            concurrency=concurrency,
            hostname=self.hostname,
            loglevel="WARNING",
            extra=["-O", "fair", "--without-heartbeat", "--include", "tests.benchmarks.steps"],
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        from canvasflow.config.celery_app import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer a ping within {timeout:g}s; see {self.log}")

    def dead(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class WorkerDied(RuntimeError):
    """A bench worker exited in the middle of a measurement (killed from outside)."""


@dataclass(frozen=True)
class Sample:
    total: float  # enqueue to finish signal
    sent: float  # until start() / apply_async() returned
    journaled: float | None = None  # canvasflow: until the run is journaled as succeeded


class Bench:
    """The client side: the workers, the signal Redis, and the ways to run a canvas."""

    def __init__(self, workdir: Path) -> None:
        import redis

        from canvasflow.config.settings import get_settings

        self.workdir = workdir
        self.r = redis.Redis.from_url(get_settings().redis_state_url)
        self.workers: list[Worker] = []
        self.restarts = 0

    def add_worker(
        self, env: dict[str, str], label: str, queues: str = QUEUES, concurrency: int = CONCURRENCY
    ) -> Worker:
        worker = Worker(self.workdir, env, label, queues, concurrency)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def restart(self) -> None:
        """New workers after one died; drop what was left queued."""
        from canvasflow.config.celery_app import app

        self.restarts += 1
        old, self.workers = self.workers, []
        for w in old:
            w.stop()
        app.control.purge()
        for w in old:
            queues = w.queues
            for q in queues.split(","):
                self.r.delete(q)
            self.add_worker(w.env, f"{w.label.split('.')[0]}.{self.restarts}", queues, w.concurrency)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def remove(self, worker: Worker) -> None:
        worker.stop()
        self.workers.remove(worker)

    def wait_signal(self, token: str) -> str:
        from tests.benchmarks.steps import done_key

        # short BLPOPs in a loop: redis-py 8 gives every connection a 5 s socket timeout,
        # and between them we notice a worker that died
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while time.monotonic() < deadline:
            got = self.r.blpop([done_key(token)], timeout=1)
            if got is not None:
                return got[1].decode()
            for w in self.workers:
                if w.dead():
                    raise WorkerDied(
                        f"worker {w.label} exited with {w.proc.returncode} mid-measurement (see {w.log})"
                    )
        raise TimeoutError(f"no finish signal for {token} within {SIGNAL_TIMEOUT:g}s")

    def settle(self) -> None:
        """Let the tail of the previous measurement (result writes, journal) drain."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            self.r.llen(q) for w in self.workers for q in w.queues.split(",")
        ):
            time.sleep(0.05)
        time.sleep(0.3)

    def raw(self, build: Callable[[str], Any], expect: str | None = None) -> Sample:
        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        build(token).apply_async()
        sent = time.perf_counter() - t0
        value = self.wait_signal(token)
        elapsed = time.perf_counter() - t0
        if expect is not None and value != expect:
            raise AssertionError(f"raw: finish signal {value!r}, expected {expect!r}")
        self.settle()
        return Sample(elapsed, sent)

    def cf(
        self,
        workflow: str,
        inputs: dict[str, Any],
        expect: str | None = None,
        on_signal: Callable[[], None] | None = None,
    ) -> Sample:
        """``on_signal``: called as soon as the finish signal arrived (e.g. to read CPU times)."""
        from canvasflow.workflows import start

        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        run = start(workflow, {**inputs, "token": token})
        sent = time.perf_counter() - t0
        value = self.wait_signal(token)
        elapsed = time.perf_counter() - t0
        if on_signal is not None:
            on_signal()
        if expect is not None and value != expect:
            raise AssertionError(f"canvasflow: finish signal {value!r}, expected {expect!r}")
        journaled = self.wait_journaled(run.id) - t0
        record = run.wait(timeout=120)
        if record.status != "succeeded":
            raise AssertionError(f"canvasflow run {run.id} ended {record.status}: {record.error}")
        self.settle()
        return Sample(elapsed, sent, journaled)

    def cf_saga(self, n: int) -> Sample:
        """A saga of ``n`` steps failing at the last: from the failure to the last compensation."""
        from canvasflow.workflows import start
        from tests.benchmarks.steps import failed_key

        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        run = start("bench.saga", {"n": n, "token": token})
        sent = time.perf_counter() - t0
        done_at = float(self.wait_signal(token))
        failed_at = float(self.r.get(failed_key(token)))
        record = run.wait(timeout=120)
        if record.status != "compensated":
            raise AssertionError(f"canvasflow saga {run.id} ended {record.status}: {record.error}")
        self.settle()
        return Sample(done_at - failed_at, sent)

    def wait_journaled(self, run_id: str) -> float:
        """When the run's finish notice (pushed after its SQL status is succeeded) arrives."""
        from canvasflow.workflows.runtime.context import runtime

        key = runtime().state.key(run_id, "done")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.r.blpop([key], timeout=1) is not None:
                at = time.perf_counter()
                self.r.rpush(key, "1")  # leave it for run.wait()
                return at
            for w in self.workers:
                if w.dead():
                    raise WorkerDied(
                        f"worker {w.label} exited with {w.proc.returncode} mid-measurement (see {w.log})"
                    )
        raise TimeoutError(f"run {run_id} was not journaled as finished within 120 s")


@contextlib.contextmanager
def client_runtime(rt: Any) -> Iterator[None]:
    """Let this process's canvasflow calls use ``rt`` (a runtime journaling elsewhere)."""
    from canvasflow.workflows.runtime import context

    pid = os.getpid()
    saved = context._runtimes.get(pid)
    context._runtimes[pid] = rt
    try:
        yield
    finally:
        if saved is None:
            context._runtimes.pop(pid, None)
        else:
            context._runtimes[pid] = saved
