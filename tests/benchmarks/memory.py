"""Memory: what a run costs in Redis while in flight, after it ended, after its expiry; worker RSS.

The runs are chains of 10 on a queue (``cap.bench.mem``) that no worker consumes at first,
so they stay in flight with their first step queued while Redis is measured: ``MEMORY USAGE``
of each run's own keys (``<prefix>:{<run>}:*``), and ``INFO memory``'s ``used_memory``
before and after starting them (which also counts the queued messages). Then a worker with
``CANVASFLOW_STATE_EXPIRES`` set short takes the queue; once every run is journaled as
succeeded its hot state (results, claims, the graph) is measured again, and after the
expiry the runs must have no key left in Redis (the journal keeps them).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.benchmarks.bench import Bench, Worker
from tests.benchmarks.report import table
from tests.benchmarks.throughput import wait_all_journaled

METHOD = [
    "* Memory: chains of 10 on `cap.bench.mem`, which no worker consumes yet, are started; "
    "each run's own keys (`<prefix>:{<run>}:*`) are sized with `MEMORY USAGE` (median of a "
    "sample of runs) and Redis `used_memory` is read before and after starting them. Then a "
    "worker with `CANVASFLOW_STATE_EXPIRES=20` takes the queue; when every run is journaled as "
    "succeeded the keys are sized again, and after the expiry the bench counts the keys of "
    "those runs left in Redis (0 expected; `tests/integration/test_state_expiry.py` checks "
    "the same for every kind of run end). Worker RSS is the resident memory of the main "
    "process plus its pool processes (psutil), after the warm-up and again after the "
    "throughput runs (some 50,000 steps on that worker).",
]


@dataclass
class Memory:
    runs: int
    in_flight_state: float  # bytes of a run's own keys, first step queued (median)
    in_flight_used: float  # used_memory growth per run started (state + queued message)
    finished_state: float  # bytes of a run's own keys once it succeeded, before the expiry
    expires: int
    keys_left: int  # keys of those runs left after the expiry (0 expected)
    rss: dict[str, tuple[float, float]]  # worker -> (MiB after warm-up, MiB after the volume runs)


def run_keys(b: Bench, run_id: str) -> list[bytes]:
    from canvasflow.workflows.runtime.context import runtime

    return list(b.r.scan_iter(match=runtime().state.key(run_id, "*"), count=1000))


def _left(b: Bench, ids: list[str]) -> tuple[int, Counter[str]]:
    """How many keys of these runs are left, and of which kinds (with their TTL, in seconds).

    One SCAN of every run's keys, kept when the run is one of ``ids``: a SCAN per run took
    longer than the expiry once the volume runs had filled Redis, and counted keys that were
    gone by the end of the count."""
    from canvasflow.workflows.runtime.context import runtime

    wanted = set(ids)
    keys = [
        k
        for k in b.r.scan_iter(match=runtime().state.key("*", "*"), count=10_000)
        if k.decode().split("{", 1)[-1].split("}", 1)[0] in wanted
    ]
    return len(keys), Counter(f"{k.decode().rsplit(':', 1)[-1]} ttl {b.r.ttl(k)}" for k in keys[:50])


def run_bytes(b: Bench, run_id: str) -> int:
    return sum(b.r.memory_usage(k, samples=0) or 0 for k in run_keys(b, run_id))


def measure(b: Bench, env: dict[str, str], steps: Any, runs: int, expires: int = 20) -> Memory:
    """``expires`` must outlast journaling every run, or the finished state is gone when sized."""
    from canvasflow.workflows import start

    token = uuid.uuid4().hex
    before = int(b.r.info("memory")["used_memory"])
    ids = [start("bench.mem_chain", {"length": 10, "token": token, "runs": runs}).id for _ in range(runs)]
    used = (int(b.r.info("memory")["used_memory"]) - before) / runs
    sample = ids[:: max(len(ids) // 25, 1)]
    in_flight = statistics.median(run_bytes(b, i) for i in sample)
    worker = b.add_worker({**env, "CANVASFLOW_STATE_EXPIRES": str(expires)}, "memory", steps.MEM_QUEUE)
    try:
        b.wait_signal(token)
        wait_all_journaled(b, ids)
        finished = statistics.median(run_bytes(b, i) for i in sample)
        deadline = time.monotonic() + expires + 30
        left, kinds = _left(b, ids)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left, kinds = _left(b, ids)
    finally:
        b.remove(worker)
    print(
        f"  memory: {runs} runs in flight: {in_flight:.0f} B of state per run, used_memory "
        f"+{used:.0f} B per run; finished: {finished:.0f} B per run; after {expires} s: {left} keys left"
        + (f" ({dict(kinds)})" if kinds else ""),
        flush=True,
    )
    return Memory(runs, in_flight, used, finished, expires, left, {})


def rss_mib(worker: Worker) -> float:
    """Resident memory of a worker: its main process and every pool process, summed (MiB)."""
    import psutil

    main = psutil.Process(worker.proc.pid)
    procs = [main, *main.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 2**20


def pool_rss_mib(worker: Worker) -> list[float]:
    import psutil

    return [p.memory_info().rss / 2**20 for p in psutil.Process(worker.proc.pid).children(recursive=True)]


def render(m: Memory) -> list[str]:
    rows = [
        ("what", "measured"),
        (
            "run in flight (first step queued): its own keys (MEMORY USAGE)",
            f"{m.in_flight_state / 1024:.1f} KiB",
        ),
        (
            "run in flight: used_memory growth per run started (state, queued message, event)",
            f"{m.in_flight_used / 1024:.1f} KiB",
        ),
        (
            f"run succeeded, hot state kept until CANVASFLOW_STATE_EXPIRES ({m.expires} s here)",
            f"{m.finished_state / 1024:.1f} KiB",
        ),
        (f"keys of the {m.runs} runs left after the expiry", str(m.keys_left)),
    ]
    for name, (start, end) in m.rss.items():
        rows.append(
            (f"worker RSS, {name}: after warm-up -> after the volume runs", f"{start:.0f} -> {end:.0f} MiB")
        )
    return table(rows)
