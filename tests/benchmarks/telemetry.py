"""Scenario 6: the cost of telemetry. The chain of 10 and the group of 1,000 with the metrics and
event-stream middleware on, against the same workflows with them off, in the same period.

A second worker, identical but for ``CANVASFLOW_METRICS=true`` and ``CANVASFLOW_EVENTS=true``
(its metric files in the bench's work directory), serves ``cap.bench.tel``; the workflows
``bench.chain_tel`` / ``bench.group_tel`` put the same steps on that queue. The client (this
process: ``start()`` runs the first hooks and dispatches the first steps) has the same two
middleware registered only while it measures the "on" side. Afterwards the scenario checks
that the telemetry really happened: runs counted in the metric files, events in the stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TEL_ENV = {"CANVASFLOW_METRICS": "true", "CANVASFLOW_EVENTS": "true"}
TARGET = 1.1


@contextlib.contextmanager
def client_telemetry(middleware: list[Any]) -> Iterator[None]:
    from canvasflow.workflows.telemetry.registry import add_middleware, remove_middleware

    for mw in middleware:
        add_middleware(mw)
    try:
        yield
    finally:
        for mw in middleware:
            remove_middleware(mw)


def telemetry_scenarios(
    b: Any, env: dict[str, str], workdir: Path, reps_chain: int, reps_group: int
) -> list[Any]:
    from canvasflow.workflows.telemetry.events import EventStream
    from canvasflow.workflows.telemetry.metrics import Metrics
    from tests.benchmarks import steps
    from tests.benchmarks.run import Sample, Scenario, alternate

    directory = workdir / "metrics"
    b.add_worker({**env, **TEL_ENV, "CANVASFLOW_METRICS_DIR": str(directory)}, "telemetry", steps.TEL_QUEUE)
    client = [Metrics(directory), EventStream()]

    def on(fn: Callable[[], Sample]) -> Callable[[], Sample]:
        def measured() -> Sample:
            with client_telemetry(client):
                return fn()

        return measured

    out = []
    for key, title, reps, off, tel, inputs, warm_inputs in (
        # a chain of 10 takes milliseconds, and its on/off difference is smaller than the noise of
        # one sample: three times the repetitions (still under a second a side) steady the median
        (
            "tel_chain10",
            "chain of 10",
            3 * reps_chain,
            "bench.chain",
            "bench.chain_tel",
            {"n": 10},
            {"n": 10},
        ),
        (
            "tel_group1000",
            "group of 1,000",
            reps_group,
            "bench.group",
            "bench.group_tel",
            {"n": 1000},
            {"n": 100},
        ),
    ):
        sc = Scenario(
            key,
            f"{title}: metrics + events on vs off",
            f"<= {TARGET}x off",
            lambda r, c: c <= TARGET * r,
        )
        sides = {
            "off": lambda w=off, i=inputs: b.cf(w, i),
            "on": on(lambda w=tel, i=inputs: b.cf(w, i)),
        }
        warm = {
            "off": lambda w=off, i=warm_inputs: b.cf(w, i),
            "on": on(lambda w=tel, i=warm_inputs: b.cf(w, i)),
        }
        alternate(b, sc, reps, sides=sides, warm=warm)
        sc.samples["raw"], sc.samples["cf"] = sc.samples.pop("off"), sc.samples.pop("on")
        out.append(sc)
    print("  " + evidence(b, directory), flush=True)
    costs = hook_cost_us(client)
    print("  hooks of one step (start, success, next dispatch) in this process, median: " + costs, flush=True)
    return out


def hook_cost_us(middleware: list[Any], n: int = 3_000) -> str:
    """What the hooks of one chain step cost, inside a task, without and with each middleware.

    The runtime's own work is not in it: this is the telemetry's share of a step (for the events,
    one pipelined Redis round trip per step)."""
    import statistics
    import time

    from celery.signals import task_postrun, task_prerun

    from canvasflow.workflows.telemetry.hooks import StepEvent
    from canvasflow.workflows.telemetry.registry import emit, listening

    def one_step() -> None:
        task_prerun.send(sender=None)
        common = {"queue": "cap.bench", "capability": "bench"}
        for hook, event in (
            ("on_step_start", StepEvent("r", "0.noop", "bench.noop", **common)),
            ("on_step_success", StepEvent("r", "0.noop", "bench.noop", duration=0.001, **common)),
            ("on_step_dispatch", StepEvent("r", "1.noop", "bench.noop", **common)),
        ):
            if listening(hook):
                emit(hook, event)
        task_postrun.send(sender=None)

    def median() -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            one_step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6

    parts = [f"no middleware {median():.1f} us"]
    with client_telemetry(middleware[:1]):
        parts.append(f"metrics {median():.1f} us")
    with client_telemetry(middleware):
        parts.append(f"metrics + events {median():.1f} us")
    return ", ".join(parts)


def evidence(b: Any, directory: Path) -> str:
    """What the telemetry side recorded: runs finished (metric files) and events (the stream)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from canvasflow.config.settings import get_settings, load_settings
    from canvasflow.workflows.telemetry.events import stream_key
    from canvasflow.workflows.telemetry.exporter import build_registry

    text = generate_latest(build_registry(load_settings(metrics_dir=str(directory)), live=False)).decode()
    finished = sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "canvasflow_runs_finished_total"
    )
    events = b.r.xlen(stream_key(get_settings().key_prefix))
    return (
        f"telemetry recorded: {finished:.0f} runs finished in the metric files, {events} events in the stream"
    )
