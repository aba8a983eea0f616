"""Latency scenarios: one canvas at a time, canvasflow against raw Celery, sides alternating.

chain of 10 / 100, group of 1,000, map_reduce (against a per-item and a hand-chunked raw
chord), a failing saga, routed chains, and the chain of 10 with the journal on PostgreSQL.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks.bench import LABELS, PG_URL, Bench, Sample, WorkerDied, client_runtime


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
    for line in routed_balance():
        print(f"  {line}", flush=True)
    return out


def routed_balance(burst: int = 200, chain_of: int = 40, within: int = 20) -> list[str]:
    """Where routed steps really ran (the engine that delivered each, as each step returns):
    a burst of ``burst`` load_balanced steps (target: no worse than 40/60), and a
    performance_based chain whose engine e2 is twice as fast (target: >= 90% of the steps
    after the first ``within`` on e2)."""
    from canvasflow.workflows import start

    spread = start("bench.routed_burst", {"n": burst, "token": uuid.uuid4().hex}).wait(timeout=300)
    ran = Counter(s.result for s in spread.steps if s.task == "bench.rwhere_lb")
    low = min(ran.get("e1", 0), ran.get("e2", 0)) / max(sum(ran.values()), 1)
    perf = start("bench.routed_perf", {"n": chain_of, "token": uuid.uuid4().hex}).wait(timeout=300)
    order = sorted(perf.steps, key=lambda s: int(s.step_id.split(".")[0]))
    fast = [s.result for s in order[within:]].count("e2") / max(len(order) - within, 1)
    return [
        f"burst of {burst} load_balanced steps over two engines: e1 {ran.get('e1', 0)}, e2 "
        f"{ran.get('e2', 0)} (smaller share {low:.0%}; target >= 40%: {'PASS' if low >= 0.4 else 'FAIL'})",
        f"performance_based chain of {chain_of}, e2 twice as fast: {fast:.0%} of the steps after the "
        f"first {within} ran on e2 (target >= 90%: {'PASS' if fast >= 0.9 else 'FAIL'})",
    ]


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


# -- the latency scenarios --------------------------------------------------------------------
def chain_scenarios(b: Bench, steps: Any, reps_chain: int) -> list[Scenario]:
    """Chains of 10 and 100 no-op steps: target canvasflow <= 1.3x raw ``chain``."""
    scenarios: list[Scenario] = []
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
    return scenarios


def group_scenario(b: Bench, steps: Any, reps_group: int) -> list[Scenario]:
    """A group of 1,000 no-op steps: target canvasflow <= 1.2x raw ``group``."""
    scenarios: list[Scenario] = []
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
    return scenarios


def map_scenarios(b: Bench, steps: Any, reps_map: int, map_n: int, chunk: int) -> list[Scenario]:
    """map_reduce against a per-item raw chord (>= 5x faster) and a hand-chunked one (<= 1.0x)."""
    scenarios: list[Scenario] = []
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
                "<= 1.0x raw chunked chord",
                lambda r, c: c <= 1.0 * r,
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
    return scenarios


def saga_scenario(b: Bench, steps: Any, reps_chain: int) -> list[Scenario]:
    """A saga of 10 failing at its last step: failure -> ninth compensation done."""
    scenarios: list[Scenario] = []
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
    return scenarios
