"""Prometheus metrics as a middleware: runs, steps, retries, failures, routes, compensations.

Workers are prefork, so the values live in prometheus-client's *multiprocess* mode: each
process writes its own memory-mapped files into one directory (``CANVASFLOW_METRICS_DIR``,
default ``<tmp>/canvasflow-metrics-<key prefix>``), and the exporter (``canvasflow metrics
--port N``, or a worker's ``--metrics-port``) adds them up at scrape time (see
:mod:`canvasflow.workflows.telemetry.exporter`). prometheus-client finds that directory in
the ``PROMETHEUS_MULTIPROC_DIR`` variable: :func:`use_directory` sets it from the setting (the
one place canvasflow writes a variable for a library), so nobody has to export it by hand.

A pool process that exits has its live-gauge files dropped (``mark_process_dead``, on Celery's
``worker_process_shutdown``); its counters and histograms stay, as Prometheus expects of a
counter. Give each host (pod) a directory of its own, emptied when the host starts.

Hot path: a label set's child is looked up once per process and kept (``_bound``), so a hook
is a dict lookup and an increment of a memory-mapped float.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram, values

from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.telemetry.hooks import (
    CompensationEvent,
    Middleware,
    RouteEvent,
    RunEvent,
    StepEvent,
)

PROMETHEUS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 86_400)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def metrics_dir(settings: Settings) -> Path:
    """The multiprocess directory the settings name (every process of a host must agree)."""
    if settings.metrics_dir:
        return Path(settings.metrics_dir)
    return Path(tempfile.gettempdir()) / f"canvasflow-metrics-{settings.key_prefix}"


def use_directory(path: Path) -> Path:
    """Make this process (and the ones it starts) write its metric values under ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ[PROMETHEUS_DIR_VARIABLE] = str(path)
    values.ValueClass = values.get_value_class()  # a library imported earlier chose before we set it
    return path


class Metrics(Middleware):
    """Counts and times runs, steps, routes and compensations into Prometheus metrics.

    Enabled by ``CANVASFLOW_METRICS=true`` (or by listing
    ``canvasflow.workflows.telemetry.metrics:Metrics`` in ``CANVASFLOW_MIDDLEWARE``)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = use_directory(Path(directory) if directory else metrics_dir(get_settings()))

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=None)  # read back from the files, not a registry

        def histogram(name: str, doc: str, labels: list[str], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=None)

        self.runs_started = counter("canvasflow_runs_started", "Runs started, by workflow", ["workflow"])
        self.runs_finished = counter(
            "canvasflow_runs_finished", "Runs that reached a terminal status", ["workflow", "status"]
        )
        self.run_duration = histogram(
            "canvasflow_run_duration_seconds",
            "Seconds from a run's creation to its terminal status",
            ["workflow", "status"],
            RUN_BUCKETS,
        )
        self.step_duration = histogram(
            "canvasflow_step_duration_seconds",
            "Seconds a step's body ran, by outcome (succeeded, failed, retried)",
            ["task", "capability", "queue", "outcome"],
            STEP_BUCKETS,
        )
        self.step_retries = counter(
            "canvasflow_step_retries", "Step attempts that failed and will run again", ["task", "capability"]
        )
        self.step_failures = counter(
            "canvasflow_step_failures",
            "Steps that failed for good, by error type",
            ["task", "capability", "error"],
        )
        self.routes = counter(
            "canvasflow_routes", "Routing decisions, by engine chosen", ["capability", "engine", "strategy"]
        )
        self.route_outcomes = counter(
            "canvasflow_route_outcomes",
            "What became of each routing decision (ran, EngineError, engine died, timed out, taken over), "
            "counted when its step ends",
            ["capability", "engine", "strategy", "outcome"],
        )
        self.compensations = counter(
            "canvasflow_compensations", "Compensation attempts, by outcome", ["task", "outcome"]
        )
        self.compensation_duration = histogram(
            "canvasflow_compensation_duration_seconds",
            "Seconds a compensation ran, by outcome",
            ["task", "outcome"],
            STEP_BUCKETS,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _bound(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- runs ------------------------------------------------------------------------------
    def on_run_start(self, event: RunEvent) -> None:
        self._bound(self.runs_started, event.workflow).inc()

    def on_run_finish(self, event: RunEvent) -> None:
        self._bound(self.runs_finished, event.workflow, event.status).inc()
        if event.duration is not None:
            self._bound(self.run_duration, event.workflow, event.status).observe(event.duration)

    # -- steps -----------------------------------------------------------------------------
    def _step_time(self, event: StepEvent, outcome: str) -> None:
        if event.duration is not None:
            labels = (event.task, event.capability or "", event.queue or "", outcome)
            self._bound(self.step_duration, *labels).observe(event.duration)

    def on_step_success(self, event: StepEvent) -> None:
        self._step_time(event, "succeeded")
        self._decisions(event, "ran")

    def on_step_failure(self, event: StepEvent) -> None:
        self._step_time(event, "failed")
        error = str((event.error or {}).get("type") or "unknown")
        self._bound(self.step_failures, event.task, event.capability or "", error).inc()
        self._decisions(event, "EngineError" if error == "EngineError" else "ran")

    def _decisions(self, event: StepEvent, last: str) -> None:
        """Each routing decision of a step that ended, with its outcome (the last one's: ``last``)."""
        for i, d in enumerate(event.routes):
            outcome = last if i == len(event.routes) - 1 else str(d.get("outcome") or "")
            labels = (event.capability or "", str(d.get("engine")), str(d.get("strategy")), outcome)
            self._bound(self.route_outcomes, *labels).inc()

    def on_step_retry(self, event: StepEvent) -> None:
        self._step_time(event, "retried")
        self._bound(self.step_retries, event.task, event.capability or "").inc()

    def on_route(self, event: RouteEvent) -> None:
        self._bound(self.routes, event.capability, event.engine, event.strategy).inc()

    # -- compensations ---------------------------------------------------------------------
    def _compensated(self, event: CompensationEvent, outcome: str) -> None:
        self._bound(self.compensations, event.task, outcome).inc()
        if event.duration is not None:
            self._bound(self.compensation_duration, event.task, outcome).observe(event.duration)

    def on_compensation_success(self, event: CompensationEvent) -> None:
        self._compensated(event, "succeeded")

    def on_compensation_failure(self, event: CompensationEvent) -> None:
        self._compensated(event, "failed")


def process_gone(settings: Settings, pid: int | None = None) -> None:
    """Drop an exiting process's live gauges from the directory (Celery's ``worker_process_shutdown``).

    canvasflow's own gauges are computed at scrape time; this is for gauges with a ``live*``
    multiprocess mode that step code declares."""
    from prometheus_client import multiprocess

    directory = metrics_dir(settings)
    if directory.is_dir():
        multiprocess.mark_process_dead(pid or os.getpid(), path=str(directory))
