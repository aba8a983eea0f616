"""The results: the table, the machine, and docs/BENCHMARKS.md (its Notes section kept)."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from tests.benchmarks.bench import CONCURRENCY, DOC, LABELS, NOTES, PG_URL
from tests.benchmarks.scenarios import Scenario, fmt


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
    return "\n".join(table(rows))


def render_client(group: Scenario) -> list[str]:
    """The client's enqueue call alone: canvasflow ``start()`` against raw ``apply_async()``."""
    raw = statistics.median(s.sent for s in group.samples["raw"])
    cf = statistics.median(s.sent for s in group.samples["cf"])
    met = cf < 0.25 * raw
    return table(
        [
            (
                "call",
                "raw celery group(...).apply_async()",
                "canvasflow start()",
                "ratio",
                "target",
                "result",
            ),
            (
                "publish a run whose first ready set is 1,000 steps",
                fmt(raw),
                fmt(cf),
                f"{cf / raw:.2f}x",
                "< 0.25x raw",
                "PASS" if met else "FAIL",
            ),
        ]
    )


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """A markdown table, columns padded: the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows[1:])]


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


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
        "hiredis (redis-py's parser, both sides)": _version("hiredis"),
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
    scenarios: list[Scenario],
    table: str,
    url: str,
    reps: tuple[int, int, int],
    elapsed: float,
    restarts: int,
    volume: list[str],
) -> None:
    """Rewrite docs/BENCHMARKS.md; ``volume`` is the markdown of the volume parts (run.volume)."""
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
        "started when none answers; `CANVASFLOW_BENCH_REDIS` overrides) and, for the "
        "journal comparisons, PostgreSQL at `postgresql://postgres@127.0.0.1:5432/test` "
        "(`CANVASFLOW_BENCH_POSTGRES`; skipped when it does not answer). It starts and stops its "
        "own workers, takes 15 minutes on an idle 2-core machine (45 on a loaded one) and "
        "rewrites this file (keeping "
        "the Notes section at the end). Options: `--quick` (fewer repetitions, smaller volumes, "
        "does not rewrite this file), `--strict` (exit status 1 when a target is missed), "
        "`--only chain,group,map,saga,pg,routed,client,throughput,memory,scaling` (run parts; "
        "the file is rewritten only after a run of all of them), `--no-postgres`, `--no-doc`, "
        "`--chunk-size N`, `--runs N`, `--chord-runs N`, `--scale-items N`, "
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
    lines += ["", "## Volume: many runs at once", *volume]
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
        f"the chain of 100, {reps_group} for the group, {reps_map} for map_reduce; the telemetry "
        f"rows {3 * reps_chain} for the chain of 10 and {reps_group} for the group. Between "
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
        '* Routed chains (rows "chain of 10 routed (...) vs unrouted canvasflow"): the "raw celery" '
        'column is the *unrouted* canvasflow chain of 10 on `cap.bench`, the "canvasflow" column the '
        "same chain of `bench.rnoop_*` steps routed on capability `benchr` with `best_available` or "
        "`load_balanced`. **Two engines are live, each on a worker of its own**: `e1` (priority 10) on "
        "the worker that serves `cap.bench`, `e2` on a second worker consuming only `cap.benchr.e2`; so "
        "a step the router moves to the other engine is a trip through the broker, not a fused hop. The "
        "two sides alternate, 21 pairs (three times the chain's repetitions), after one warm-up of each. "
        "Printed after the table, same run: one routing decision's cost (`route_step` with the live view "
        "cached), where a burst of 200 `load_balanced` steps after one step really ran (each step "
        "returns the engine whose queue delivered it; target no worse than 40/60), and the share of a "
        "`performance_based` chain of 40 that ran on `e2` after its first 20 steps when `e1` sleeps "
        "twice as long (target >= 90%).",
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
