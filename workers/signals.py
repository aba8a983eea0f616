"""Celery signal handlers for telemetry: log context on every task line; the worker's metrics.

* every line logged inside a task carries its id and name;
* with ``CANVASFLOW_METRICS`` on and ``CANVASFLOW_METRICS_PORT`` set, the worker's main process
  serves ``/metrics`` (docs/observability.md), and each pool process that exits drops its live
  gauges from the metrics directory.

Connected when imported: the composition root (``canvasflow.app``) imports it.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_shutdown

from canvasflow.config.settings import get_settings
from canvasflow.workflows.telemetry.exporter import serve
from canvasflow.workflows.telemetry.metrics import process_gone


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task_name=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    s = get_settings()
    if s.metrics and s.metrics_port:
        serve(s, s.metrics_port)


@worker_process_shutdown.connect
def _metrics_process_gone(pid: int | None = None, **_: Any) -> None:
    s = get_settings()
    if s.metrics:
        process_gone(s, pid)
