"""Client: the cost of starting runs, alone. ``start()`` of a chain of 10 in a loop and
``start_many`` of a batch, journaling to SQLite and to PostgreSQL, against raw Celery's
``chain(...).apply_async()`` of the same chain in a loop. Every run has inputs of its own (its
number, an argument of its first step), as runs started by a service do: no two canvases are
the same, so only what is common to the shape can be reused.

The runs go to ``cap.bench.idle``, which no worker consumes while the client is timed, so the
client has the cores (with Redis and the database) instead of sharing them with a worker busy
on the runs already started. Then the worker of that journal consumes the queue
(``add_consumer``) until the last run's finish signal, and the bench waits until every run is
journaled as succeeded: nothing is left behind, and every run started was a real, complete one.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks.bench import Bench, Worker, client_runtime
from tests.benchmarks.report import table
from tests.benchmarks.throughput import wait_all_journaled

IDLE_QUEUE = "cap.bench.idle"
LENGTH = 10
START_MS = 2.0  # target: start() at most 2 ms per run
MANY_RATE = 2000.0  # target: start_many at least 2,000 runs/s
SIDES = {
    "raw": "raw celery chain(...).apply_async(), in a loop",
    "start": "canvasflow start(), in a loop (SQLite journal)",
    "many": "canvasflow start_many() (SQLite journal)",
    "start_pg": "canvasflow start(), in a loop (PostgreSQL journal)",
    "many_pg": "canvasflow start_many() (PostgreSQL journal)",
}
METHOD = [
    "* Client: a chain of 10 started on `cap.bench.idle`, a queue no worker consumes while the "
    "client is timed, each run with inputs of its own (its number, an argument of its first "
    "step): raw `chain(...).apply_async()` in a loop, canvasflow `start()` in a loop and "
    "one `start_many()` of the whole batch (validation, compile, journal rows, Redis state, first "
    "publish, all inside the timing), with the SQLite worker's journal and with PostgreSQL's. Then "
    "the worker of that journal is told to consume the queue (`add_consumer`); the bench waits for "
    "the last run's finish signal and until every run is journaled as succeeded. The sides "
    "alternate, the order rotating; medians.",
]


@dataclass
class Starts:
    runs: int
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def ms_per_run(self, side: str) -> float:
        return statistics.median(self.seconds[side]) / self.runs * 1000

    def runs_per_s(self, side: str) -> float:
        return self.runs / statistics.median(self.seconds[side])


def measure(b: Bench, steps: Any, runs: int, reps: int, pg_rt: Any = None) -> Starts:
    """``reps`` rounds of every side, the order rotating (one warm-up round first)."""
    from canvasflow.workflows import start, start_many

    inputs = {"length": LENGTH, "runs": runs, "queue": IDLE_QUEUE}
    sqlite_worker = next(w for w in b.workers if w.label == "sqlite")

    def cf(many: bool, token: str) -> list[str]:
        batch = {**inputs, "token": token}
        if many:
            return [
                r.id
                for r in start_many("bench.tally_chain", [{**batch, "seq": i} for i in range(1, runs + 1)])
            ]
        return [start("bench.tally_chain", {**batch, "seq": i}).id for i in range(1, runs + 1)]

    def raw(token: str) -> list[str]:
        for i in range(1, runs + 1):
            steps.tally_chain(LENGTH, token, runs, queue=IDLE_QUEUE, seq=i).apply_async()
        return []

    sides: dict[str, tuple[Callable[[str], list[str]], Worker, Any]] = {
        "raw": (raw, sqlite_worker, None),
        "start": (lambda t: cf(False, t), sqlite_worker, None),
        "many": (lambda t: cf(True, t), sqlite_worker, None),
    }
    if pg_rt is not None:
        pg_worker = next(w for w in b.workers if w.label == "postgres")
        sides["start_pg"] = (lambda t: cf(False, t), pg_worker, pg_rt)
        sides["many_pg"] = (lambda t: cf(True, t), pg_worker, pg_rt)
    out = Starts(runs)
    names = list(sides)
    print(f"  client: {runs} starts of a chain of {LENGTH} per side", flush=True)
    for i in range(reps + 1):  # round 0 warms up
        for side in names[i % len(names) :] + names[: i % len(names)]:
            fn, worker, rt = sides[side]
            elapsed = _one(b, fn, worker, rt)
            if i:
                out.seconds.setdefault(side, []).append(elapsed)
                print(
                    f"    rep {i}/{reps} {side:<9} {elapsed / runs * 1000:6.2f} ms per run, "
                    f"{runs / elapsed:6.0f} runs/s",
                    flush=True,
                )
    return out


def _one(b: Bench, fn: Callable[[str], list[str]], worker: Worker, rt: Any) -> float:
    from canvasflow.config.celery_app import app

    token = uuid.uuid4().hex
    with _maybe_runtime(rt):
        t0 = time.perf_counter()
        ids = fn(token)
        elapsed = time.perf_counter() - t0
        app.control.add_consumer(IDLE_QUEUE, destination=[worker.hostname], reply=True)
        try:
            b.wait_signal(token)
            if ids:
                wait_all_journaled(b, ids)
        finally:
            app.control.cancel_consumer(IDLE_QUEUE, destination=[worker.hostname], reply=True)
    b.settle()
    return elapsed


def _maybe_runtime(rt: Any) -> Any:
    import contextlib

    return client_runtime(rt) if rt is not None else contextlib.nullcontext()


def render(s: Starts) -> list[str]:
    raw = s.ms_per_run("raw")
    rows = [("call", "ms per run", "runs/s", "vs raw apply_async", "target", "result")]
    for side, title in SIDES.items():
        if side not in s.seconds:
            continue
        ms, rate = s.ms_per_run(side), s.runs_per_s(side)
        target, result = "-", "-"
        if side.startswith("start"):
            target, result = f"<= {START_MS:g} ms per run", "PASS" if ms <= START_MS else "FAIL"
        elif side.startswith("many"):
            target, result = f">= {MANY_RATE:,.0f} runs/s", "PASS" if rate >= MANY_RATE else "FAIL"
        rows.append((title, f"{ms:.2f}", f"{rate:.0f}", f"{ms / raw:.2f}x", target, result))
    return table(rows)
