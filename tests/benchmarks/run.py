"""canvasflow vs raw Celery on the same worker: ``python -m tests.benchmarks.run`` (``make bench``).

Scenarios (both sides run by one worker: prefork, concurrency 2, prefetch 1, ``-O fair``,
same Redis broker and result backend; raw Celery keeps its normal result backend):

1. chain of 10 / 100 no-op steps      target: canvasflow <= 1.3x raw ``chain``
2. group of 1,000 no-op steps         target: canvasflow <= 1.2x raw ``group``
3. map_reduce over 10,000 items       target: canvasflow >= 5x faster than raw ``chord``, and <= 1.0x
                                     a hand-chunked raw chord of the same chunks
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

Volume (throughput.py): 1,000 concurrent chains of 10 and 100 concurrent chords of 100 against
the same on raw Celery (steps/s; target >= 1.1x raw and >= 80% of the worker's no-op ceiling),
the chains again journaling to PostgreSQL, and map_reduce over 100,000 items with 1, 2 and 4
worker processes (the scaling factor). memory.py: Redis bytes per run in flight, finished and
after its expiry; worker RSS after the volume runs. client: ``start()`` of a run whose first
ready set is a 1,000-member group against raw ``group(...).apply_async()`` (target < 0.25x).

``--profile`` runs each scenario once per side with timers inside the worker instead
(see timers.py). With ``--strict`` the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench import (  # noqa: F401  (names kept importable from run.py)
    DOC,
    LABELS,
    PG_URL,
    QUEUES,
    REDIS_URL,
    ROOT,
    Bench,
    Sample,
    Worker,
    WorkerDied,
    client_runtime,
    postgres_answers,
)
from tests.benchmarks.report import machine, render_client, render_table, write_doc  # noqa: F401
from tests.benchmarks.scenarios import (  # noqa: F401
    Scenario,
    alternate,
    chain_scenarios,
    fmt,
    group_scenario,
    map_scenarios,
    postgres_scenario,
    raw_chord,
    raw_chunked_chord,
    routed_scenarios,
    routing_decision_ms,
    saga_scenario,
)

LATENCY = ("chain", "group", "map", "saga", "pg", "routed", "telemetry")
VOLUME = ("client", "throughput", "memory", "scaling")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="fewer repetitions and smaller volumes; does not rewrite the doc",
    )
    ap.add_argument(
        "--only",
        default=",".join(LATENCY + VOLUME),
        help=f"comma-separated subset of: {', '.join(LATENCY + VOLUME)} (default: all)",
    )
    ap.add_argument("--no-postgres", action="store_true", help="skip every PostgreSQL journal run")
    ap.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.relative_to(ROOT)}")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, run each scenario once per side with timers inside "
        "the worker and print where the time goes",
    )
    ap.add_argument("--chunk-size", type=int, default=100, help="map_reduce chunk size (default 100)")
    ap.add_argument("--runs", type=int, default=1000, help="concurrent chains of 10 (default 1000)")
    ap.add_argument("--chord-runs", type=int, default=100, help="concurrent chords of 100 (default 100)")
    ap.add_argument(
        "--scale-items", type=int, default=100_000, help="map_reduce items for scaling (default 100000)"
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM (timeout, Ctrl-C from a wrapper): unwind, so the finally below stops the workers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = set(args.only.split(","))
    unknown = only - set(LATENCY + VOLUME)
    if unknown:
        raise SystemExit(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
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
    scenarios: list[Scenario] = []
    extra: list[str] = []
    b = Bench(workdir)
    try:
        routed = "routed" in only
        b.add_worker(env, "sqlite", QUEUES + ("," + steps.ENGINE_QUEUES["e1"] if routed else ""))
        if routed:  # two engines live, each on a worker of its own (docs/BENCHMARKS.md)
            b.add_worker(env, "e2", steps.ENGINE_QUEUES["e2"])
        print(f"worker ready ({b.workers[0].log}); {time.monotonic() - began:.1f}s", flush=True)
        if args.profile:
            from tests.benchmarks.timers import profile_pass

            profile_pass(b, steps, only, map_n, args.chunk_size)
            return 0
        if "chain" in only:
            scenarios += chain_scenarios(b, steps, reps_chain)
        if "group" in only:
            scenarios += group_scenario(b, steps, reps_group)
        if "map" in only:
            scenarios += map_scenarios(b, steps, reps_map, map_n, args.chunk_size)
        if "saga" in only:
            scenarios += saga_scenario(b, steps, reps_chain)
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
        extra = volume(b, env, steps, only, args, scenarios)
    finally:
        b.stop()
        if local is not None:
            local.stop()

    elapsed = time.monotonic() - began
    table = render_table(scenarios) if scenarios else ""
    print()
    print(table)
    print("\n".join(extra))
    print(f"\nbench took {elapsed:.0f}s; worker logs in {workdir}")
    if b.restarts:
        print(f"a worker was killed from outside {b.restarts} time(s); those measurements were re-run")
    if not args.no_doc and not args.quick and only >= set(LATENCY + VOLUME) - {"pg"}:
        write_doc(scenarios, table, url, (reps_chain, reps_group, reps_map), elapsed, b.restarts, extra)
        print(f"wrote {DOC.relative_to(ROOT)}")
    missed = [sc.title for sc in scenarios if sc.met is False] + [
        line.split("|")[1].strip() for line in extra if line.rstrip().endswith("| FAIL |")
    ]
    if missed:
        print(f"target missed: {', '.join(missed)}")
    return 1 if missed and args.strict else 0


def volume(
    b: Bench,
    env: dict[str, str],
    steps: Any,
    only: set[str],
    args: argparse.Namespace,
    scenarios: list[Scenario],
) -> list[str]:
    """The client, throughput, memory and scaling parts; their sections of the doc (markdown)."""
    from tests.benchmarks import memory, starts, throughput

    out: list[str] = []
    quick = args.quick
    if "client" in only:  # the enqueue calls of the group of 1,000 (measured now if not yet)
        group = [sc for sc in scenarios if sc.key == "group1000"] or group_scenario(
            b, steps, 3 if quick else 5
        )
        out += ["", "### Client: starting a run with a 1,000-member group", "", *render_client(group[0])]
        pg_rt = pg_runtime(b, env, steps) if not args.no_postgres and postgres_answers(PG_URL) else None
        got = starts.measure(b, steps, 200 if quick else 1000, 1 if quick else 3, pg_rt)
        out += ["", "### Client: starting chains of 10, one by one and in a batch", "", *starts.render(got)]
    if "throughput" in only or "memory" in only:
        rss_before = {w.label: memory.rss_mib(w) for w in b.workers}
        volumes, rate = [], None
        if "throughput" in only:
            pg_rt = None
            if not args.no_postgres and postgres_answers(PG_URL):
                pg_rt = pg_runtime(b, env, steps)
            reps = 1 if quick else 3
            runs, chord_runs = (200, 20) if quick else (args.runs, args.chord_runs)
            rate = throughput.ceiling(b, steps, 2_000 if quick else 5_000, reps)
            volumes.append(throughput.chains(b, steps, runs, reps, pg_rt))
            volumes.append(throughput.chords(b, steps, chord_runs, 100, reps))
            out += ["", "### Throughput (medians)", "", *throughput.render(volumes, rate)]
        if "memory" in only:
            mem = memory.measure(b, env, steps, 100 if quick else 500)
            mem.rss = {
                w.label: (rss_before[w.label], memory.rss_mib(w)) for w in b.workers if w.label in rss_before
            }
            out += ["", "### Memory", "", *memory.render(mem)]
    if "scaling" in only:
        items = 20_000 if quick else args.scale_items
        s = throughput.scaling(b, env, items, 100, 1 if quick else 3)
        out += ["", f"### Scaling: map_reduce over {items:,} items", "", *throughput.render_scaling(s)]
    return [*out, "", "### Method (volume)", "", *starts.METHOD, *throughput.METHOD, *memory.METHOD]


def pg_runtime(b: Bench, env: dict[str, str], steps: Any) -> Any:
    """A worker journaling to PostgreSQL on ``cap.bench.pg`` (once), and a client runtime for it."""
    from canvasflow.config.celery_app import app
    from canvasflow.config.settings import load_settings
    from canvasflow.workflows.runtime.context import Runtime

    if not any(steps.PG_QUEUE in w.queues for w in b.workers):
        b.add_worker({**env, "CANVASFLOW_DATABASE_URL": PG_URL}, "postgres", steps.PG_QUEUE)
    return Runtime(app, load_settings(database_url=PG_URL))


if __name__ == "__main__":
    sys.exit(main())
