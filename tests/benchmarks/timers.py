"""Where worker time goes: wrap the runtime's calls with timers, without touching its files.

``python -m tests.benchmarks.run --profile`` starts the worker with ``CANVASFLOW_BENCH_PROFILE=1``;
steps.py then calls :func:`install` in each pool process (``worker_process_init``). Every
wrapped call adds its wall time to a per-process table, pushed to the Redis hash
``bench:prof`` after each task (and after each journal flush, which may run in the journal's
background thread); :func:`profile_pass` runs the scenarios and prints one table per side.

Timers are inclusive (``complete`` contains ``dispatch`` which contains ``publish``...).
``trace:<task>`` is Celery's task trace, task_prerun to task_postrun: for raw Celery it
contains the result-backend writes and the publishing of the next chain step; for
canvasflow the whole run_step (claim, body, complete, dispatch, journal enqueue). Rows
prefixed ``client`` were timed in the bench process (``start()`` and its parts).
Wall times on a loaded 2-core machine include waiting for the CPU.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import defaultdict
from typing import Any

import redis

KEY = "bench:prof"
_stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_lock = threading.Lock()
_started: dict[str, float] = {}
_installed = False
_prefix = ""
_client: redis.Redis | None = None


def enabled() -> bool:
    return os.environ.get("CANVASFLOW_BENCH_PROFILE") == "1"


def _timed(name: str, fn: Any, push: bool = False) -> Any:
    name = _prefix + name

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, time.perf_counter() - t0)
            if push:
                flush()

    wrapper.__bench_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def _add(name: str, seconds: float) -> None:
    with _lock:
        s = _stats[name]
        s[0] += 1
        s[1] += seconds


def _wrap(owner: Any, attr: str, name: str, push: bool = False) -> None:
    fn = getattr(owner, attr, None)
    if fn is not None and not getattr(fn, "__bench_wrapped__", False):
        setattr(owner, attr, _timed(name, fn, push))


def install(prefix: str = "", signals: bool = True) -> None:
    """Wrap the runtime's Redis, SQL and publish calls (idempotent); ``prefix`` names the side."""
    global _installed, _prefix
    if _installed:
        return
    _installed = True
    _prefix = prefix
    from canvasflow.workflows.runs import lifecycle
    from canvasflow.workflows.runtime import advance, context, executor, fusion, sending, special
    from canvasflow.workflows.runtime.state import RunState
    from canvasflow.workflows.store.sql import SqlRunStore

    for attr in (
        "claim",
        "complete",
        "results",
        "chunk_done",
        "chunk_results",
        "set_chunks",
        "status",
        "expire",
        "notify_finished",
    ):
        _wrap(RunState, attr, f"redis.{attr}")
    for attr in (
        "record_step",
        "record_steps",
        "record_many",
        "transition_run",
        "add_chunk_steps",
        "get_run",
        "create_run",
    ):
        _wrap(SqlRunStore, attr, f"sql.{attr}")
    _wrap(context.Runtime, "graph", "runtime.graph")
    _wrap(executor, "run_step", "executor.run_step")
    for attr in ("complete", "dispatch", "finish_run"):  # executor calls the first by its imported name
        _wrap(advance, attr, f"advance.{attr}")
    executor.complete = advance.complete
    # send_step is called from sending (a global) and special and fusion (imported names): wrap each
    publish = _timed("publish (send_step)", sending.send_step)
    sending.send_step = publish
    special.send_step = publish
    fusion.send_step = publish
    _wrap(special, "chunk_completed", "special.chunk_completed")
    try:  # the batched journal writer, where the runtime has one
        from canvasflow.workflows.runtime import journal

        _wrap(journal, "sync_steps", "journal.sync_steps (run end)")
        _wrap(journal.JournalWriter, "record_step", "journal.record_step (enqueue)")
        _wrap(journal.JournalWriter, "succeeded", "journal.succeeded")
        _wrap(journal.JournalWriter, "flush", "journal.flush (thread or run end)", push=True)
    except ImportError:
        pass
    for attr in ("start_run", "_launch", "launch_ready"):
        _wrap(lifecycle, attr, f"lifecycle.{attr}")
    lifecycle.dispatch = advance.dispatch  # the name lifecycle imported: now the timed one
    if not signals:
        return
    from celery.signals import task_postrun, task_prerun

    @task_prerun.connect(weak=False)
    def _pre(task_id: str = "", **_: Any) -> None:
        _started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)
    def _post(task_id: str = "", task: Any = None, **_: Any) -> None:
        t0 = _started.pop(task_id, None)
        if t0 is not None:
            _add(f"trace:{getattr(task, 'name', '?')}", time.perf_counter() - t0)
        flush()


def flush() -> None:
    """Push this process's timers to Redis and clear them."""
    global _client
    with _lock:
        items = [(k, v[0], v[1]) for k, v in _stats.items()]
        _stats.clear()
    if not items:
        return
    if _client is None:
        from canvasflow.config.settings import get_settings

        _client = redis.Redis.from_url(get_settings().redis_state_url)
    p = _client.pipeline(transaction=False)
    for name, n, secs in items:
        p.hincrby(KEY, f"{name}|n", int(n))
        p.hincrbyfloat(KEY, f"{name}|s", secs)
    p.execute()


def collect(r: redis.Redis) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for k, v in r.hgetall(KEY).items():
        name, kind = k.decode().rsplit("|", 1)
        n, s = out.get(name, (0, 0.0))
        out[name] = (int(v), s) if kind == "n" else (n, float(v))
    return out


def render(title: str, stats: dict[str, tuple[int, float]], tasks: int, wall: float) -> str:
    """One table: each timer's calls, total, and milliseconds per task executed."""
    lines = [
        f"  {title}: {tasks} task executions, wall {wall * 1000:.0f} ms "
        f"({wall * 1000 / max(tasks, 1):.2f} ms per task, 2 pool processes)",
        f"    {'timer':<38} {'calls':>7} {'total ms':>10} {'ms/task':>8} {'ms/call':>8}",
    ]
    for name, (n, s) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        lines.append(
            f"    {name:<38} {n:>7} {s * 1000:>10.1f} {s * 1000 / max(tasks, 1):>8.3f} "
            f"{s * 1000 / max(n, 1):>8.3f}"
        )
    return "\n".join(lines)


def profile_pass(b: Any, steps: Any, only: set[str], map_n: int, chunk: int) -> None:
    """Run each scenario per side with the timers on and print the tables."""
    from tests.benchmarks.scenarios import raw_chord

    install(prefix="client ", signals=False)  # the bench process: start() and its parts
    cases: list[tuple[str, int, Any, Any]] = []  # title, repetitions, raw, canvasflow
    if "chain" in only:
        cases.append(
            (
                "chain of 10",
                5,
                lambda: b.raw(lambda t: steps.chain_canvas(10, t)),
                lambda: b.cf("bench.chain", {"n": 10}),
            )
        )
        cases.append(
            (
                "chain of 100",
                1,
                lambda: b.raw(lambda t: steps.chain_canvas(100, t)),
                lambda: b.cf("bench.chain", {"n": 100}),
            )
        )
    if "group" in only:
        cases.append(
            (
                "group of 1,000",
                1,
                lambda: b.raw(lambda t: steps.group_canvas(1000, t)),
                lambda: b.cf("bench.group", {"n": 1000}),
            )
        )
    if "map" in only:
        cases.append(
            (
                f"map_reduce over {map_n:,}",
                1,
                lambda: b.raw(lambda t: raw_chord(steps, map_n, t)),
                lambda: b.cf("bench.map_reduce", {"n": map_n, "chunk_size": chunk}),
            )
        )
    b.raw(lambda t: steps.chain_canvas(10, t))
    b.cf("bench.chain", {"n": 10})
    for title, reps, raw, cf in cases:
        for side, fn in (("raw celery", raw), ("canvasflow", cf)):
            time.sleep(0.5)  # let the previous side's background journal flush land first
            b.r.delete(KEY)
            with _lock:
                _stats.clear()
            samples = [fn() for _ in range(reps)]
            flush()
            stats = collect(b.r)
            tasks = sum(n for k, (n, _) in stats.items() if k.startswith("trace:"))
            label = f"{title} / {side}" + (f" ({reps} runs summed)" if reps > 1 else "")
            print(render(label, stats, tasks, sum(x.total for x in samples)), flush=True)
            print(
                f"    enqueue call in the client (start() / apply_async()): "
                f"{sum(x.sent for x in samples) * 1000:.1f} ms; to the finish signal: "
                f"{sum(x.total for x in samples) * 1000:.1f} ms"
                + (
                    f"; to the run journaled succeeded: {sum(x.journaled for x in samples) * 1000:.1f} ms"
                    if side == "canvasflow"
                    else ""
                ),
                flush=True,
            )
