"""canvasflow vs raw Celery on the same worker: ``python -m tests.benchmarks.run`` (``make bench``).

Scenarios (both sides run by one worker: prefork, concurrency 2, prefetch 1, ``-O fair``,
same Redis broker and result backend; raw Celery keeps its normal result backend):

1. chain of 10 / 100 no-op steps      target: canvasflow <= 1.3x raw ``chain``
2. group of 1,000 no-op steps         target: canvasflow <= 1.2x raw ``group``
3. map_reduce over 10,000 items       target: canvasflow >= 5x faster than raw ``chord``
5. chain of 10 routed (best_available / load_balanced) against the same chain unrouted,
   one worker serving both engines and the plain queue (target <= 1.1x), and the median
   cost of one routing decision in this process (target < 0.5 ms)
6. chain of 10 and group of 1,000 with the metrics and event-stream middleware on, against
   the same workflows with them off (target <= 1.1x; tests/benchmarks/telemetry.py)
4. chain of 10 with the journal on PostgreSQL (when 127.0.0.1:5432 answers): a second
   worker, same settings, journals to PostgreSQL; raw, canvasflow/SQLite and
   canvasflow/PostgreSQL alternate.

Timing is from just before the client builds and enqueues the canvas to the moment the bench's
BLPOP receives the *finish signal* that the last step (or the reducer, or the member of a
group that brings a counter to N) pushes to Redis -- never ``.get()``, which polls. Each
side is warmed up once, then the sides alternate for N repetitions; medians are reported.

``--profile`` runs each scenario once per side with timers inside the worker instead
(see timers.py). With ``--strict`` the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

    def __init__(self, workdir: Path, env: dict[str, str], label: str, queues: str) -> None:
        self.env, self.label, self.queues, self.workdir = env, label, queues, workdir
        self.hostname = f"bench-{label}-{os.getpid()}@{socket.gethostname()}"
        self.log = workdir / f"worker-{label}.log"
        from canvasflow.workers.fleet import worker_command

        cmd = worker_command(
            queues.split(","),
            concurrency=CONCURRENCY,
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

    def add_worker(self, env: dict[str, str], label: str, queues: str = QUEUES) -> Worker:
        worker = Worker(self.workdir, env, label, queues)
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
            self.add_worker(w.env, f"{w.label.split('.')[0]}.{self.restarts}", queues)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

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

    def cf(self, workflow: str, inputs: dict[str, Any], expect: str | None = None) -> Sample:
        from canvasflow.workflows import start

        token = uuid.uuid4().hex
        t0 = time.perf_counter()
        run = start(workflow, {**inputs, "token": token})
        sent = time.perf_counter() - t0
        value = self.wait_signal(token)
        elapsed = time.perf_counter() - t0
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


# -- measuring ------------------------------------------------------------------------------
@dataclass
class Scenario:
    key: str
    title: str
    target: str
    check: Callable[[float, float], bool] | None  # (raw, cf) medians -> met?; None: informational
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def median(self, side: str) -> float:
        return statistics.median(s.total for s in self.samples[side])

    def median_journaled(self, side: str) -> float:
        return statistics.median(s.journaled or 0.0 for s in self.samples[side])

    @property
    def ratio(self) -> float:
        return self.median("cf") / self.median("raw")

    @property
    def met(self) -> bool | None:
        return None if self.check is None else self.check(self.median("raw"), self.median("cf"))


def alternate(
    b: Bench,
    sc: Scenario,
    reps: int,
    sides: dict[str, Callable[[], Sample]],
    warm: dict[str, Callable[[], Sample]],
) -> Scenario:
    """Warm each side up once, then ``reps`` rounds with the order of the sides rotating."""

    def attempt(fn: Callable[[], Sample]) -> Sample:
        for _ in range(3):
            try:
                return fn()
            except WorkerDied as exc:
                print(f"    !! {exc}; restarting and repeating this measurement", flush=True)
                b.restart()
                for w in warm.values():
                    w()
        raise RuntimeError("a worker died three times in a row; giving up")

    print(f"  {sc.title}: warm-up", flush=True)
    for w in warm.values():
        attempt(w)
    names = list(sides)
    for i in range(reps):
        order = names[i % len(names) :] + names[: i % len(names)]
        for side in order:
            sample = attempt(sides[side])
            sc.samples.setdefault(side, []).append(sample)
            extra = "" if sample.journaled is None else f", run journaled {sample.journaled * 1000:7.1f} ms"
            print(
                f"    rep {i + 1}/{reps} {LABELS[side]:<13} {sample.total * 1000:9.1f} ms"
                f"   (enqueue call {sample.sent * 1000:7.1f} ms{extra})",
                flush=True,
            )
    return sc


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


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


# -- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions, map over 2,000 items; does not rewrite the doc",
    )
    ap.add_argument(
        "--only",
        default="chain,group,map,saga,pg,routed,telemetry",
        help="comma-separated subset of: chain, group, map, saga, pg, routed, telemetry (default: all)",
    )
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL journal run")
    ap.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.relative_to(ROOT)}")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, run each scenario once per side with timers inside "
        "the worker and print where the time goes",
    )
    ap.add_argument("--chunk-size", type=int, default=100, help="map_reduce chunk size (default 100)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    if args.no_postgres:
        only.discard("pg")

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="canvasflow-bench-"))
    from canvasflow.config.local_redis import answers, start_redis_server

    local = None
    url = REDIS_URL
    if not answers(url):
        local = start_redis_server(workdir, db=12)
        url = local.url
        print(f"Redis at {REDIS_URL} does not answer: started one at {url}")
    env = {
        "CANVASFLOW_BROKER_URL": url,
        "CANVASFLOW_RESULT_BACKEND": url,
        "CANVASFLOW_STATE_URL": url,
        "CANVASFLOW_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "CANVASFLOW_KEY_PREFIX": "cfbench",
        "CANVASFLOW_CAPABILITIES": json.dumps(["default", "bench"]),
        "CANVASFLOW_WORKFLOW_MODULES": json.dumps(["tests.benchmarks.steps"]),
        "CANVASFLOW_PREFETCH_MULTIPLIER": "1",
        "CANVASFLOW_LOG_LEVEL": "WARNING",
        "CANVASFLOW_LOG_FORMAT": "console",
        "CANVASFLOW_BENCH_PROFILE": "1" if args.profile else "0",
    }
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    import redis

    from canvasflow.config.logging import configure_logging

    configure_logging("console", "WARNING")
    redis.Redis.from_url(url).flushdb()

    from tests.benchmarks import steps  # registers the steps and workflows

    reps_chain, reps_group, reps_map = (3, 2, 2) if args.quick else (7, 5, 3)
    map_n = 2_000 if args.quick else 10_000
    chunk = args.chunk_size
    scenarios: list[Scenario] = []
    b = Bench(workdir)
    try:
        b.add_worker(env, "sqlite", QUEUES + ("," + steps.ROUTED_QUEUES if "routed" in only else ""))
        print(f"worker ready ({b.workers[0].log}); {time.monotonic() - began:.1f}s", flush=True)
        if args.profile:
            from tests.benchmarks.timers import profile_pass

            profile_pass(b, steps, only, map_n, chunk)
            return 0
        if "chain" in only:
            for n, reps in ((10, reps_chain), (100, max(reps_chain - 2, 3))):
                scenarios.append(
                    alternate(
                        b,
                        Scenario(f"chain{n}", f"chain of {n}", "<= 1.3x raw", lambda r, c: c <= 1.3 * r),
                        reps,
                        sides={
                            "raw": lambda n=n: b.raw(lambda t: steps.chain_canvas(n, t)),
                            "cf": lambda n=n: b.cf("bench.chain", {"n": n}),
                        },
                        warm={
                            "raw": lambda: b.raw(lambda t: steps.chain_canvas(10, t)),
                            "cf": lambda: b.cf("bench.chain", {"n": 10}),
                        },
                    )
                )
        if "group" in only:
            n = 1_000
            scenarios.append(
                alternate(
                    b,
                    Scenario("group1000", f"group of {n:,}", "<= 1.2x raw", lambda r, c: c <= 1.2 * r),
                    reps_group,
                    sides={
                        "raw": lambda: b.raw(lambda t: steps.group_canvas(n, t)),
                        "cf": lambda: b.cf("bench.group", {"n": n}),
                    },
                    warm={
                        "raw": lambda: b.raw(lambda t: steps.group_canvas(100, t)),
                        "cf": lambda: b.cf("bench.group", {"n": 100}),
                    },
                )
            )
        if "map" in only:
            n = map_n
            total = str(sum(2 * i for i in range(n)))
            scenarios.append(
                alternate(
                    b,
                    Scenario(
                        f"map{n}",
                        f"map_reduce over {n:,}",
                        ">= 5x faster than raw chord",
                        lambda r, c: r >= 5 * c,
                    ),
                    reps_map,
                    sides={
                        "raw": lambda: b.raw(lambda t: raw_chord(steps, n, t), expect=total),
                        "cf": lambda: b.cf("bench.map_reduce", {"n": n, "chunk_size": chunk}, expect=total),
                    },
                    warm={
                        "raw": lambda: b.raw(lambda t: raw_chord(steps, 200, t)),
                        "cf": lambda: b.cf("bench.map_reduce", {"n": 200, "chunk_size": chunk}),
                    },
                )
            )
            scenarios.append(
                alternate(
                    b,
                    Scenario(
                        f"mapchunked{n}",
                        f"map_reduce over {n:,} vs a hand-chunked raw chord ({chunk} per chunk)",
                        "<= 1.5x raw chunked chord",
                        lambda r, c: c <= 1.5 * r,
                    ),
                    reps_map,
                    sides={
                        "raw": lambda: b.raw(lambda t: raw_chunked_chord(steps, n, chunk, t), expect=total),
                        "cf": lambda: b.cf("bench.map_reduce", {"n": n, "chunk_size": chunk}, expect=total),
                    },
                    warm={
                        "raw": lambda: b.raw(lambda t: raw_chunked_chord(steps, 200, chunk, t)),
                        "cf": lambda: b.cf("bench.map_reduce", {"n": 200, "chunk_size": chunk}),
                    },
                )
            )
        if "saga" in only:
            scenarios.append(
                alternate(
                    b,
                    Scenario(
                        "saga10",
                        "saga of 10 failing at step 10: failure -> 9th compensation (raw: chain of 9)",
                        "<= 2x raw chain of 9",
                        lambda r, c: c <= 2 * r,
                    ),
                    reps_chain,
                    sides={
                        "raw": lambda: b.raw(lambda t: steps.chain_canvas(9, t)),
                        "cf": lambda: b.cf_saga(10),
                    },
                    warm={
                        "raw": lambda: b.raw(lambda t: steps.chain_canvas(9, t)),
                        "cf": lambda: b.cf_saga(10),
                    },
                )
            )
        if "routed" in only:
            scenarios += routed_scenarios(b, reps_chain)
        if "telemetry" in only:  # metrics + events on vs off: tests/benchmarks/telemetry.py
            from tests.benchmarks.telemetry import telemetry_scenarios

            scenarios += telemetry_scenarios(b, env, workdir, reps_chain, reps_group)
        if "pg" in only:
            if postgres_answers(PG_URL):
                scenarios.append(postgres_scenario(b, env, reps_chain, steps))
            else:
                print(f"PostgreSQL at {PG_URL} does not answer: skipping the journal comparison")
    finally:
        b.stop()
        if local is not None:
            local.stop()

    elapsed = time.monotonic() - began
    table = render_table(scenarios)
    print()
    print(table)
    print(f"\nbench took {elapsed:.0f}s; worker logs in {workdir}")
    if b.restarts:
        print(f"a worker was killed from outside {b.restarts} time(s); those measurements were re-run")
    if not args.no_doc and not args.quick and only >= {"chain", "group", "map"}:
        write_doc(scenarios, table, url, (reps_chain, reps_group, reps_map), elapsed, b.restarts)
        print(f"wrote {DOC.relative_to(ROOT)}")
    missed = [sc.title for sc in scenarios if sc.met is False]
    if missed:
        print(f"target missed: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


def routed_scenarios(b: Bench, reps: int) -> list[Scenario]:
    """Routed chains of 10 against the unrouted one, alternating; then one decision's cost.

    In the table the "raw celery" column is the unrouted canvasflow chain of this scenario.
    Three times the chain's repetitions: the routed path adds ~1% of CPU per step (profiled,
    docs/BENCHMARKS.md), far less than what a shared machine's load moves one 40 ms sample,
    so a median of 7 pairs swung from 1.0x to 1.26x between runs."""
    reps *= 3
    out = []
    for strategy in ("best_available", "load_balanced"):
        sc = Scenario(
            f"routed_{strategy}",
            f"chain of 10 routed ({strategy}) vs unrouted canvasflow",
            "<= 1.1x unrouted",
            lambda r, c: c <= 1.1 * r,
        )
        plain = lambda: b.cf("bench.chain", {"n": 10})  # noqa: E731
        routed = lambda s=strategy: b.cf("bench.routed_chain", {"n": 10, "strategy": s})  # noqa: E731
        alternate(
            b, sc, reps, sides={"plain": plain, "routed": routed}, warm={"plain": plain, "routed": routed}
        )
        sc.samples["raw"], sc.samples["cf"] = sc.samples.pop("plain"), sc.samples.pop("routed")
        out.append(sc)
    median_ms = routing_decision_ms()
    print(
        f"  one routing decision (route_step, cached live view): median {median_ms:.4f} ms (target < 0.5 ms)"
    )
    return out


def routing_decision_ms(n: int = 20_000) -> float:
    """Median of ``route_step`` for a load_balanced step of ``benchr`` with the live view cached."""
    from canvasflow.workers.routing.router import route_step
    from canvasflow.workflows.runtime.context import runtime

    rt = runtime()
    routing = {"capability": "benchr", "strategy": "load_balanced"}
    route_step(rt.redis, rt.settings, "s", routing)  # the read of the live view, then cache hits
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        route_step(rt.redis, rt.settings, "s", routing)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def raw_chord(steps: Any, n: int, token: str) -> Any:
    from celery import chord

    return chord([steps.double.s(i) for i in range(n)], steps.reduce.s(token=token))


def raw_chunked_chord(steps: Any, n: int, chunk: int, token: str) -> Any:
    """The same map written by hand in raw Celery: a chord of chunk tasks, then the reduce."""
    from celery import chord

    chunks = [list(range(i, min(i + chunk, n))) for i in range(0, n, chunk)]
    return chord([steps.double_chunk.s(c) for c in chunks], steps.reduce_chunks.s(token=token))


def postgres_scenario(b: Bench, env: dict[str, str], reps: int, steps: Any) -> Scenario:
    """Chain of 10: raw, canvasflow journaling to SQLite, canvasflow journaling to PostgreSQL.

    A second worker (same settings, ``CANVASFLOW_DATABASE_URL`` on PostgreSQL) serves the
    queue ``cap.bench.pg``; the ``bench.chain_pg`` workflow routes its steps there, and the
    client starts it with a runtime whose journal is PostgreSQL too.
    """
    from canvasflow.config.celery_app import app
    from canvasflow.config.settings import load_settings
    from canvasflow.workflows.runtime.context import Runtime

    b.add_worker({**env, "CANVASFLOW_DATABASE_URL": PG_URL}, "postgres", steps.PG_QUEUE)
    pg_rt = Runtime(app, load_settings(database_url=PG_URL))

    def cf_pg() -> Sample:
        with client_runtime(pg_rt):
            return b.cf("bench.chain_pg", {"n": 10})

    sides = {
        "raw": lambda: b.raw(lambda t: steps.chain_canvas(10, t)),
        "cf": lambda: b.cf("bench.chain", {"n": 10}),
        "cf_pg": cf_pg,
    }
    return alternate(
        b,
        Scenario("chain10pg", "chain of 10, journal on PostgreSQL", "(informational)", None),
        reps,
        sides=sides,
        warm=sides,
    )


# -- output -------------------------------------------------------------------------------------
def render_table(scenarios: list[Scenario]) -> str:
    rows = [
        (
            "scenario",
            "raw celery",
            "canvasflow",
            "canvasflow / raw",
            "target",
            "result",
            "canvasflow run journaled",
        )
    ]
    for sc in scenarios:
        if sc.check is None:  # the PostgreSQL comparison: SQLite and PostgreSQL journal rows
            raw = sc.median("raw")
            for side, title in (("cf", "chain of 10, journal on SQLite (same period)"), ("cf_pg", sc.title)):
                rows.append(
                    (
                        title,
                        fmt(raw),
                        fmt(sc.median(side)),
                        f"{sc.median(side) / raw:.2f}x",
                        sc.target,
                        "-",
                        fmt(sc.median_journaled(side)),
                    )
                )
            continue
        rows.append(
            (
                sc.title,
                fmt(sc.median("raw")),
                fmt(sc.median("cf")),
                f"{sc.ratio:.2f}x",
                sc.target,
                "PASS" if sc.met else "FAIL",
                fmt(sc.median_journaled("cf")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), sep, *(line(r) for r in rows[1:])])


def machine() -> dict[str, str]:
    import sqlite3

    import celery
    import kombu
    import redis
    import sqlalchemy

    from canvasflow.config.settings import get_settings

    info = {
        "cpus (nproc)": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis-py": redis.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(Exception):
        r = redis.Redis.from_url(get_settings().redis_state_url)
        info["redis server"] = r.info()["redis_version"]
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2) as conn:
            info["postgresql"] = str(conn.execute("show server_version").fetchone()[0])
    with contextlib.suppress(Exception):
        info["load average at the end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def write_doc(
    scenarios: list[Scenario], table: str, url: str, reps: tuple[int, int, int], elapsed: float, restarts: int
) -> None:
    reps_chain, reps_group, reps_map = reps
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "canvasflow against raw Celery: same worker, same broker, same run. Regenerate with",
        "",
        "```",
        "make bench      # runs: .venv/bin/python -m tests.benchmarks.run",
        "```",
        "",
        "It needs Redis (127.0.0.1:6379, database 12 is flushed; a private `redis-server` is "
        "started when none answers; `CANVASFLOW_BENCH_REDIS` overrides) and, for the last "
        "scenario, PostgreSQL at `postgresql://postgres@127.0.0.1:5432/test` "
        "(`CANVASFLOW_BENCH_POSTGRES`; skipped when it does not answer). It starts and stops its "
        "own workers, takes about 5-6 minutes and rewrites this file (keeping the Notes section "
        "at the end). Options: `--quick` (fewer repetitions, does not rewrite this file), "
        "`--strict` (exit status 1 when a target is missed), "
        "`--only chain,group,map,saga,pg`, `--no-postgres`, `--no-doc`, `--chunk-size N`, "
        "`--profile` (no timing: per-step breakdown of where worker time goes).",
        "",
        f"Last run: **{now}** (the bench took {elapsed:.0f} s"
        + (
            f"; a worker was killed from outside {restarts} time(s) and those measurements were re-run"
            if restarts
            else ""
        )
        + ").",
        "",
        "## Results (medians)",
        "",
        table,
        "",
        "Ratio = canvasflow median / raw Celery median (below 1: canvasflow is faster). "
        "For map_reduce the target is raw / canvasflow >= 5, i.e. a ratio <= 0.20. "
        '"canvasflow run journaled" is not part of the comparison: it is when the run itself '
        "was recorded as succeeded (its last step completed, every step synced to SQL, the run's "
        "status written, waiters notified) -- the finish signal comes from inside the last "
        "step's body, before that bookkeeping, just as raw Celery's last result is stored after "
        "its body pushed the signal.",
        "",
        "Every repetition, in ms (total enqueue-to-signal; in brackets, how long the client's "
        "`start()` / `apply_async()` call itself took):",
        "",
    ]
    for sc in scenarios:
        parts = []
        for side, samples in sc.samples.items():
            vals = ", ".join(f"{s.total * 1000:.0f} [{s.sent * 1000:.0f}]" for s in samples)
            parts.append(f"{LABELS[side]}: {vals}")
        lines.append(f"* {sc.title}: " + "; ".join(parts))
    lines += [
        "",
        "## Machine",
        "",
        *[f"* {k}: {v}" for k, v in machine().items()],
        "",
        "## Method",
        "",
        f"* One `celery worker` subprocess serves both sides: prefork pool, concurrency "
        f"{CONCURRENCY}, `-O fair`, prefetch multiplier 1, late acks, task events on, as "
        "configured in `config/celery_app.py`; queues `cap.bench,canvasflow,canvasflow.control`; "
        "started by the bench with `--include tests.benchmarks.steps` and pinged before use.",
        f"* Broker, result backend and canvasflow's run state share one Redis (`{url}`, flushed "
        "first). canvasflow's journal is a fresh SQLite file (WAL) in a temp directory.",
        "* Raw Celery is used as users use it: the same `@step` tasks (outside a canvasflow run a "
        "step is a plain Celery task) in `chain(...)`, `group(...)` and `chord(...)`, with "
        "results stored in the Redis result backend. canvasflow runs the same canvases "
        "registered as workflows (`tests/benchmarks/steps.py`), started with "
        "`workflows.start(...)`, which validates the inputs, compiles the canvas, journals the "
        "run and publishes its first steps -- all inside the timed interval.",
        "* Timing: from just before the client builds and enqueues the canvas to the moment the "
        "bench's `BLPOP` receives a **finish signal** pushed to Redis by the step code itself: "
        "the last chain link, the group member whose `INCR` brings a counter to N, or the "
        "reducer (which pushes the sum, checked on both sides). Never `.get()`, which sleeps "
        "and re-polls (it made a raw 10,000-chord look about 3x slower than it is).",
        f"* Each side is warmed up once; then the sides alternate, the order rotating each "
        f"repetition: {reps_chain} repetitions for the chain of 10, {max(reps_chain - 2, 3)} for "
        f"the chain of 100, {reps_group} for the group, {reps_map} for map_reduce. Between "
        "measurements the bench waits for the queues to drain and for the canvasflow run to be "
        "journaled as succeeded. Medians are reported.",
        "* map_reduce: `map_reduce(double.s(), reduce.s(token=...), items_from=items.s(10000), "
        "chunk_size=100)` -- 100 chunk messages of 100 items -- against "
        "`chord([double.s(i) for i in range(10000)], reduce.s(token=...))`. canvasflow's side "
        "also runs the `items` step that produces the list. Like with like: the same map against "
        "the hand-chunked raw chord a Celery user would write for it, "
        "`chord([double_chunk.s(chunk) for chunk in chunks], reduce_chunks.s(token=...))` with the "
        "same 100 items per chunk.",
        "* PostgreSQL: a second worker with identical settings but "
        "`CANVASFLOW_DATABASE_URL=postgresql://...` serves the queue `cap.bench.pg`; the "
        "workflow `bench.chain_pg` routes the same chain there and the client starts it with a "
        "runtime journaling to PostgreSQL. Raw, canvasflow/SQLite and canvasflow/PostgreSQL "
        "alternate in the same period, so the three are comparable with each other (not "
        "necessarily with the chain of 10 above, measured minutes earlier).",
        "* The machine is small (2 cores) and shared with other jobs: run-to-run noise is large "
        "(see the individual repetitions). The alternation keeps the comparison fair; it does "
        "not make the absolute numbers precise.",
        "",
        "## Where the time goes",
        "",
        "`python -m tests.benchmarks.run --profile` wraps the runtime's calls in the worker "
        "(claim and complete Lua scripts, publishing, SQL journal, graph cache) with timers, "
        "plus Celery's task trace (task_prerun to task_postrun) on both sides, and prints a "
        "per-task table for each scenario; see `tests/benchmarks/timers.py`.",
        "",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    old = DOC.read_text() if DOC.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else NOTES + "\n\n(none yet)\n"
    DOC.write_text("\n".join(lines) + "\n" + notes)


if __name__ == "__main__":
    sys.exit(main())
