"""Volume: many runs in flight at once, canvasflow against raw Celery on the same worker.

* ``chains``: 1,000 concurrent runs of a 10-step chain (10,000 steps);
* ``chords``: 100 concurrent runs of a chord of 100 members and a body (10,100 steps);
* optionally the chains again with canvasflow journaling to PostgreSQL (a second worker);
* ``ceiling``: what the worker does with no-op tasks and nothing else (raw Celery, results
  ignored, every message queued before the worker starts consuming them);
* ``scaling``: map_reduce over 100,000 items with 1, 2 and 4 worker processes on one queue.

Each side starts all its runs as fast as its client can (``start()`` in a loop; raw Celery:
``apply_async()`` in a loop) and is timed from the first start to the finish signal pushed by
the last run's last step (an ``INCR`` shared by the runs reaching ``runs``); never ``.get()``.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks.bench import LABELS, QUEUES, Bench, WorkerDied, client_runtime
from tests.benchmarks.report import table

CEILING_QUEUE = "cap.bench.ceiling"
METHOD = [
    "* Throughput: every run of a side is started as fast as the client can, in a loop in one "
    "process: canvasflow `start(...)` (validation, compile, the journal's `INSERT`s, the first "
    "steps published) against raw `chain(...).apply_async()` / `chord(...).apply_async()` with "
    "its Redis result backend. The last step of every run is `bench.tally`, an `INCR` of a "
    "counter shared by the runs; the one that brings it to the number of runs pushes the "
    "finish signal. Timed from the first start to that signal, so the client's own publishing "
    "is inside the interval on both sides (and competes with the worker for the 2 cores). "
    "Steps/s = runs x steps per run / that time. The sides alternate, the order rotating; "
    "after each canvasflow measurement the bench waits until every run is journaled as "
    "succeeded (and checks that none failed) before the next one starts.",
    "* Worker ceiling: the same worker, no-op `bench.count` tasks as plain Celery tasks with "
    "results ignored, all queued on `cap.bench.ceiling` before the worker is told to consume "
    "it (`add_consumer`): tasks / time to the last one's signal. It is what this worker can "
    "do with tasks that do nothing, with no result backend and no client publishing at the "
    "same time.",
    "* Journal on PostgreSQL: the chains also run on a second worker, same settings but "
    "`CANVASFLOW_DATABASE_URL` on PostgreSQL, serving `cap.bench.pg`; the client journals "
    "there too (`canvasflow/pg` rows). The journal writer's batch and pool settings, and how to "
    "size the pool: [docs/postgres.md](postgres.md).",
    "* Scaling: the bench's workers are stopped; 1, 2 and then 4 `celery worker` processes of "
    "concurrency 1 consume the same queues (one capability queue, `cap.bench`); "
    "`map_reduce(double.s(), reduce.s(), items_from=items.s(N), chunk_size=100)` is timed to "
    "its reducer's finish signal. The machine has 2 cores: beyond 2 processes they share them. "
    "Cores busy: CPU seconds (psutil) of the worker processes and their pool children, of the "
    "redis-server, of the bench process and of the rest of the machine, from just before the "
    "start to the finish signal, divided by that time. Worker CPU: those seconds of the worker "
    "processes for the whole map_reduce; flat from 1 to 2 processes means no work per item was "
    "added by sharing the queue (no lock, no contention in Redis), so what stops the factor short "
    "of 2 is the cores: Redis and the rest of the machine need some of the same 2 (the ceiling "
    "printed under the table).",
]


@dataclass(frozen=True)
class Batch:
    elapsed: float  # first start to the finish signal
    client: float  # until the client had started every run


@dataclass
class Volume:
    key: str
    title: str
    runs: int
    steps_per_run: int
    samples: dict[str, list[Batch]] = field(default_factory=dict)

    def steps_per_s(self, side: str) -> float:
        return statistics.median(self.runs * self.steps_per_run / s.elapsed for s in self.samples[side])

    def runs_per_s(self, side: str) -> float:
        return statistics.median(self.runs / s.elapsed for s in self.samples[side])


def raw_runs(b: Bench, build: Callable[[str], Any], runs: int) -> Batch:
    token = uuid.uuid4().hex
    t0 = time.perf_counter()
    for _ in range(runs):
        build(token).apply_async()
    client = time.perf_counter() - t0
    b.wait_signal(token)
    elapsed = time.perf_counter() - t0
    b.settle()
    return Batch(elapsed, client)


def cf_runs(b: Bench, workflow: str, inputs: dict[str, Any], runs: int) -> Batch:
    from canvasflow.workflows import start

    token = uuid.uuid4().hex
    t0 = time.perf_counter()
    ids = [start(workflow, {**inputs, "token": token, "runs": runs}).id for _ in range(runs)]
    client = time.perf_counter() - t0
    b.wait_signal(token)
    elapsed = time.perf_counter() - t0
    wait_all_journaled(b, ids)
    b.settle()
    return Batch(elapsed, client)


def wait_all_journaled(b: Bench, ids: list[str], timeout: float = 300.0) -> None:
    """Until every run is journaled as finished (outside the timing), then check they succeeded."""
    from canvasflow.workflows.runtime.context import runtime

    store, wanted = runtime().store, set(ids)
    deadline = time.monotonic() + timeout
    while wanted & store.runs_with_status(("pending", "running", "waiting"), limit=100_000).keys():
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs not journaled as finished within {timeout:g}s")
        if any(w.dead() for w in b.workers):
            raise WorkerDied("a worker exited while its runs were being journaled")
        time.sleep(0.2)
    bad = (
        wanted & store.runs_with_status(("failed", "compensated", "compensation_failed", "cancelled")).keys()
    )
    if bad:
        raise AssertionError(f"{len(bad)} of {len(ids)} runs did not succeed, e.g. {sorted(bad)[0]}")


def measure(b: Bench, vol: Volume, reps: int, sides: dict[str, Callable[[], Batch]]) -> Volume:
    """``reps`` rounds, the order of the sides rotating; a worker killed from outside: repeat."""
    names = list(sides)
    for i in range(reps):
        for side in names[i % len(names) :] + names[: i % len(names)]:
            for attempt in range(3):
                try:
                    sample = sides[side]()
                    break
                except WorkerDied as exc:
                    print(f"    !! {exc}; restarting and repeating this measurement", flush=True)
                    b.restart()
                    if attempt == 2:
                        raise
            vol.samples.setdefault(side, []).append(sample)
            n = vol.runs * vol.steps_per_run
            print(
                f"    rep {i + 1}/{reps} {LABELS[side]:<13} {sample.elapsed:7.2f} s  "
                f"{n / sample.elapsed:7.0f} steps/s  (client started all runs in {sample.client:6.2f} s)",
                flush=True,
            )
    return vol


def chains(b: Bench, steps: Any, runs: int, reps: int, pg_rt: Any = None) -> Volume:
    length = 10
    print(f"  {runs:,} concurrent chains of {length}", flush=True)
    vol = Volume("chains", f"{runs:,} concurrent chains of {length}", runs, length)
    sides: dict[str, Callable[[], Batch]] = {
        "raw": lambda: raw_runs(b, lambda t: steps.tally_chain(length, t, runs), runs),
        "cf": lambda: cf_runs(b, "bench.tally_chain", {"length": length}, runs),
    }
    if pg_rt is not None:

        def cf_pg() -> Batch:
            with client_runtime(pg_rt):
                return cf_runs(b, "bench.tally_chain", {"length": length, "queue": steps.PG_QUEUE}, runs)

        sides["cf_pg"] = cf_pg
    warm = max(runs // 20, 10)
    raw_runs(b, lambda t: steps.tally_chain(length, t, warm), warm)
    cf_runs(b, "bench.tally_chain", {"length": length}, warm)
    return measure(b, vol, reps, sides)


def chords(b: Bench, steps: Any, runs: int, width: int, reps: int) -> Volume:
    print(f"  {runs:,} concurrent chords of {width}", flush=True)
    vol = Volume("chords", f"{runs:,} concurrent chords of {width}", runs, width + 1)
    sides: dict[str, Callable[[], Batch]] = {
        "raw": lambda: raw_runs(b, lambda t: steps.tally_chord(width, t, runs), runs),
        "cf": lambda: cf_runs(b, "bench.tally_chord", {"width": width}, runs),
    }
    raw_runs(b, lambda t: steps.tally_chord(width, t, 5), 5)
    cf_runs(b, "bench.tally_chord", {"width": width}, 5)
    return measure(b, vol, reps, sides)


def ceiling(b: Bench, steps: Any, n: int, reps: int) -> float:
    """Median no-op tasks/s of the first worker: ``n`` messages queued first, then consumed."""
    from canvasflow.config.celery_app import app

    worker = b.workers[0]
    rates = []
    for i in range(reps + 1):  # the first one warms up
        token = uuid.uuid4().hex
        with app.producer_or_acquire() as producer, producer.batch():
            for _ in range(n):
                steps.count.apply_async(
                    (token, n), queue=CEILING_QUEUE, ignore_result=True, producer=producer
                )
        t0 = time.perf_counter()
        app.control.add_consumer(CEILING_QUEUE, destination=[worker.hostname], reply=True)
        b.wait_signal(token)
        elapsed = time.perf_counter() - t0
        app.control.cancel_consumer(CEILING_QUEUE, destination=[worker.hostname], reply=True)
        if i:
            rates.append(n / elapsed)
            print(f"    ceiling rep {i}/{reps}: {n / elapsed:7.0f} no-op tasks/s", flush=True)
        b.settle()
    return statistics.median(rates)


@dataclass
class Scaling:
    items: int
    chunk: int
    seconds: dict[int, list[float]] = field(default_factory=dict)  # processes -> samples
    # processes -> per sample, cores kept busy by each kind of process (cpu_busy)
    busy: dict[int, list[dict[str, float]]] = field(default_factory=dict)

    def items_per_s(self, processes: int) -> float:
        return self.items / statistics.median(self.seconds[processes])

    def factor(self, processes: int) -> float:
        return self.items_per_s(processes) / self.items_per_s(1)


def scaling(
    b: Bench, env: dict[str, str], items: int, chunk: int, reps: int, counts: tuple[int, ...] = (1, 2, 4)
) -> Scaling:
    """map_reduce over ``items`` with 1, 2, 4 worker processes (one ``celery worker`` of
    concurrency 1 each) consuming the same capability queue; the bench's other workers are
    stopped for it and started again after."""
    total = str(sum(2 * i for i in range(items)))
    saved = list(b.workers)
    for w in saved:
        b.remove(w)
    out = Scaling(items, chunk)
    try:
        for count in counts:
            fleet = [b.add_worker(env, f"scale{count}.{i}", QUEUES, concurrency=1) for i in range(count)]
            b.cf("bench.map_reduce", {"n": 2_000, "chunk_size": chunk})  # warm every process up a bit
            for rep in range(reps):
                before, after = cpu_seconds(fleet), {}
                sample = b.cf(
                    "bench.map_reduce",
                    {"n": items, "chunk_size": chunk},
                    expect=total,
                    on_signal=lambda: after.update(cpu_seconds(fleet)),  # noqa: B023 (used at once)
                )
                busy = cpu_busy(before, after, sample.total)
                out.seconds.setdefault(count, []).append(sample.total)
                out.busy.setdefault(count, []).append(busy)
                print(
                    f"    {count} process(es), rep {rep + 1}/{reps}: {sample.total:6.2f} s, "
                    f"{items / sample.total:9.0f} items/s; cores busy: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()),
                    flush=True,
                )
            for w in fleet:
                b.remove(w)
    finally:
        for w in list(b.workers):
            b.remove(w)
        for w in saved:
            b.add_worker(w.env, w.label + ".after", w.queues, w.concurrency)
    return out


# -- output -------------------------------------------------------------------------------------
def render(volumes: list[Volume], ceiling_rate: float | None) -> list[str]:
    """The throughput table (markdown lines): steps/s per side, the ratio, the share of the ceiling."""
    rows = [
        (
            "scenario",
            "side",
            "runs/s",
            "steps/s",
            "vs raw celery",
            "of the worker ceiling",
            "target",
            "result",
        )
    ]
    for vol in volumes:
        raw = vol.steps_per_s("raw")
        for side in vol.samples:
            rate = vol.steps_per_s(side)
            share = f"{rate / ceiling_rate:.0%}" if ceiling_rate else "-"
            target, result = "-", "-"
            if side == "cf":
                target = ">= 1.1x raw and >= 80% of ceiling"
                met = rate >= 1.1 * raw and (ceiling_rate is None or rate >= 0.8 * ceiling_rate)
                result = "PASS" if met else "FAIL"
            rows.append(
                (
                    vol.title,
                    LABELS[side],
                    f"{vol.runs_per_s(side):.1f}",
                    f"{rate:.0f}",
                    f"{rate / raw:.2f}x",
                    share,
                    target,
                    result,
                )
            )
    if ceiling_rate:
        rows.append(
            (
                "worker ceiling (no-op tasks, raw celery)",
                "-",
                "-",
                f"{ceiling_rate:.0f}",
                "-",
                "100%",
                "-",
                "-",
            )
        )
    return table(rows)


def render_scaling(s: Scaling) -> list[str]:
    kinds = ("workers", "redis", "client", "other")
    rows = [
        (
            "worker processes",
            "median time",
            "items/s",
            "scaling factor (vs 1 process)",
            "cores busy (medians): workers / Redis / bench client / other",
            "worker CPU (s)",
        )
    ]
    for count in sorted(s.seconds):
        busy = s.busy.get(count) or [{}]
        worker_cpu = [b.get("workers", 0.0) * t for b, t in zip(busy, s.seconds[count], strict=False)]
        rows.append(
            (
                str(count),
                f"{statistics.median(s.seconds[count]):.2f} s",
                f"{s.items_per_s(count):.0f}",
                f"{s.factor(count):.2f}x",
                " / ".join(f"{statistics.median(b.get(k, 0.0) for b in busy):.2f}" for k in kinds),
                f"{statistics.median(worker_cpu):.2f}",
            )
        )
    return table(rows) + _ceiling(s, kinds)


def _ceiling(s: Scaling, kinds: tuple[str, ...]) -> list[str]:
    """What the machine allows: with the CPU per item of 1 process, the cores cap the factor."""
    if 1 not in s.busy or 2 not in s.seconds:
        return []
    cores = os.cpu_count() or 1
    one = statistics.median(sum(b.get(k, 0.0) for k in kinds) for b in s.busy[1])
    return [
        "",
        f"One process kept {one:.2f} cores busy (workers, Redis, client and the rest together); with the "
        f"same CPU per item, {min(2, cores)} processes on this {cores}-core machine can be at most "
        f"{min(2.0, cores / one):.2f}x faster. The worker CPU column says whether the work per item grew "
        "with the processes (it should stay flat).",
    ]


def cpu_seconds(fleet: list[Any]) -> dict[str, float]:
    """CPU seconds so far of the fleet's processes (with their pool children), of every
    redis-server, of this process, and of the whole machine (``total``)."""
    import psutil

    def used(p: Any) -> float:
        try:
            t = p.cpu_times()
            reaped = getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
            return float(t.user + t.system + reaped)
        except psutil.Error:
            return 0.0

    out = {"workers": 0.0, "redis": 0.0, "client": used(psutil.Process())}
    for w in fleet:
        root = psutil.Process(w.proc.pid)
        out["workers"] += used(root) + sum(used(c) for c in root.children(recursive=True))
    servers = [p for p in psutil.process_iter(["name"]) if "redis-server" in (p.info["name"] or "")]
    out["redis"] = sum(used(p) for p in servers)
    m = psutil.cpu_times()
    out["total"] = m.user + m.system + m.nice + getattr(m, "irq", 0) + getattr(m, "softirq", 0)
    return out


def cpu_busy(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Cores each kind kept busy over ``wall`` seconds; ``other``: the rest of the machine."""
    busy = {k: (after[k] - before[k]) / wall for k in ("workers", "redis", "client")}
    busy["other"] = max((after["total"] - before["total"]) / wall - sum(busy.values()), 0.0)
    return busy
