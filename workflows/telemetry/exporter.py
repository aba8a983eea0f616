"""The ``/metrics`` endpoint: the metric files every process wrote, plus what is measured live.

Two kinds of value:

* counters and histograms the :class:`~canvasflow.workflows.telemetry.metrics.Metrics`
  middleware wrote into the multiprocess directory, added up across processes
  (prometheus-client's ``MultiProcessCollector``);
* gauges asked for at scrape time (:class:`LiveCollector`): each capability queue's depth and
  consumers from the broker (``config.brokers.queue_stats``), active runs by workflow and status
  from the journal (one grouped SQL count), and stalled runs (no progress for
  ``CANVASFLOW_STALLED_AFTER`` seconds). They are cached for ``cache_seconds`` so that several
  Prometheus servers scraping one exporter cost the broker and the database one look.

Served by ``canvasflow metrics --port N`` and, with ``--metrics-port N`` (or
``CANVASFLOW_METRICS_PORT``), by a worker's main process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from canvasflow.config.brokers import queue_stats
from canvasflow.config.celery_app import current_app
from canvasflow.config.queues import queue_for
from canvasflow.config.settings import Settings
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.engines import registry as engines
from canvasflow.workflows.runs.recovery import stalled_runs
from canvasflow.workflows.runtime.active import ACTIVE_SQL
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.state import PROGRESS, as_text
from canvasflow.workflows.telemetry.metrics import metrics_dir, use_directory

log = structlog.get_logger("canvasflow.telemetry")
STALLED_LIMIT = 1_000  # runs looked at for stalled ones in one scrape
PROGRESS_LIMIT = 1_000  # running runs whose steps' progress one scrape shows


class LiveCollector(Collector):
    """Queue depth and consumers, active and stalled runs: asked for when Prometheus scrapes."""

    def __init__(self, settings: Settings, *, cache_seconds: float = 5.0, timeout: float = 1.0) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.cache_seconds:
                self._cached = (time.monotonic(), self._measure())
            yield from self._cached[1]

    def _measure(self) -> list[GaugeMetricFamily]:
        errors = GaugeMetricFamily(
            "canvasflow_scrape_errors", "1 when a live measurement failed in this scrape", labels=["part"]
        )
        out: list[GaugeMetricFamily] = []
        for part, measure in (("queues", self._queues), ("runs", self._runs)):
            try:
                out += measure()
                errors.add_metric([part], 0)
            except Exception as exc:  # the broker or the journal is down: say so, keep the rest
                log.warning(
                    "metrics: live measurement failed", part=part, error=f"{type(exc).__name__}: {exc}"
                )
                errors.add_metric([part], 1)
        return [*out, errors]

    def capabilities(self) -> list[str]:
        return sorted({*self.settings.capabilities, *capabilities.capabilities()})

    def _queues(self) -> list[GaugeMetricFamily]:
        # each capability's shared queue, then each declared engine's own queue
        queues = [(c, queue_for(c)) for c in self.capabilities()]
        queues += [(e.capability, e.queue) for e in engines.all()]
        stats = queue_stats(current_app(), [q for _, q in queues], timeout=self.timeout)
        depth = GaugeMetricFamily(
            "canvasflow_queue_depth", "Messages waiting on a capability queue", labels=["capability", "queue"]
        )
        consumers = GaugeMetricFamily(
            "canvasflow_queue_consumers", "Consumers of a capability queue", labels=["capability", "queue"]
        )
        for (cap, _), q in zip(queues, stats, strict=True):
            depth.add_metric([cap, q.queue], q.depth)
            consumers.add_metric([cap, q.queue], q.consumers)
        return [depth, consumers]

    def _runs(self) -> list[GaugeMetricFamily]:
        rt = runtime()
        runs = rt.store.t.runs
        query = (
            select(runs.c.workflow, runs.c.status, func.count())
            .where(runs.c.status.in_(ACTIVE_SQL))
            .group_by(runs.c.workflow, runs.c.status)
        )
        with rt.store.engine.connect() as conn:
            rows = list(conn.execute(query))
        active = GaugeMetricFamily(
            "canvasflow_runs_active",
            "Runs not yet terminal, by workflow and status",
            labels=["workflow", "status"],
        )
        for workflow, status, count in rows:
            active.add_metric([workflow, status], count)
        stalled = GaugeMetricFamily(
            "canvasflow_runs_stalled",
            f"Running or compensating runs with no progress for {self.settings.stalled_after}s",
            labels=["workflow"],
        )
        by_workflow: dict[str, int] = {}
        for record, _idle in stalled_runs(rt, self.settings.stalled_after, STALLED_LIMIT):
            by_workflow[record.workflow] = by_workflow.get(record.workflow, 0) + 1
        for workflow, count in sorted(by_workflow.items()):
            stalled.add_metric([workflow], count)
        return [active, stalled, _progress(rt)]


def build_registry(settings: Settings, *, live: bool = True) -> CollectorRegistry:
    """The registry ``/metrics`` serves: every process's metric files, and the live gauges."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(use_directory(metrics_dir(settings))))
    if live:
        registry.register(LiveCollector(settings))
    return registry


def serve(settings: Settings, port: int, address: str = "0.0.0.0", *, live: bool = True) -> Any:
    """Serve ``/metrics`` on ``address:port`` from a daemon thread; returns the HTTP server."""
    server, _thread = start_http_server(port, address, registry=build_registry(settings, live=live))
    log.info("metrics: serving /metrics", port=server.server_port, directory=str(metrics_dir(settings)))
    return server


def _progress(rt: Runtime) -> GaugeMetricFamily:
    """The last progress report of each running step (``context().progress``): done / total.

    One series per running step that reported progress (gone when it finishes), for at most
    ``PROGRESS_LIMIT`` running runs: one SQL query, then one pipelined Redis round trip."""
    runs = rt.store.t.runs
    query = select(runs.c.id, runs.c.workflow).where(runs.c.status == "running").limit(PROGRESS_LIMIT)
    with rt.store.engine.connect() as conn:
        rows = list(conn.execute(query))
    gauge = GaugeMetricFamily(
        "canvasflow_step_progress",
        "Running steps' last reported progress: done / total (done when no total was given)",
        labels=["workflow", "run_id", "step_id"],
    )
    pipe = rt.redis.pipeline(transaction=False)
    for run_id, _workflow in rows:
        pipe.hgetall(rt.state.key(run_id, PROGRESS))
        pipe.hgetall(rt.state.key(run_id, "st"))
    replies = pipe.execute() if rows else []
    for i, (run_id, workflow) in enumerate(rows):
        reports, states = replies[2 * i], replies[2 * i + 1]
        running = {as_text(k) for k, v in states.items() if as_text(v) == "running"}
        for raw_step, raw in reports.items():
            step_id = as_text(raw_step)
            if step_id in running:
                report = json.loads(raw)
                done, total = float(report.get("done") or 0), report.get("total")
                gauge.add_metric([workflow, run_id, step_id], done / total if total else done)
    return gauge
