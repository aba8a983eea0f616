"""The runtime's telemetry events: built here, handed to the middleware (``telemetry.registry``).

Every function first asks :func:`~canvasflow.workflows.telemetry.registry.listening` and returns
at once when no middleware overrides the hook, so a process without middleware builds no
event and makes no extra Redis call. ``run_finished`` is guarded by one ``SET NX`` per run
and generation, so a terminal status reached on two paths (the failing worker and the
recovery sweep reconciling SQL) is announced once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery.exceptions import Retry

from canvasflow.workers.routing.decisions import journaled
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.errors import error_info, traceback_text
from canvasflow.workflows.runtime.graph import StepNode
from canvasflow.workflows.telemetry.hooks import CompensationEvent, RouteEvent, RunEvent, StepEvent
from canvasflow.workflows.telemetry.registry import emit, listening

CARRIER_HEADER = "canvasflow_carrier"  # the dispatch event's carrier, sent with the step message
CREATED = "created"  # the run's meta field: when the run was created (unix time; kept by a resume)


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- runs ------------------------------------------------------------------------------------
def run_started(
    run_id: str, workflow: str, version: str | None, generation: int, parent_run_id: str | None
) -> None:
    if listening("on_run_start"):
        emit(
            "on_run_start",
            RunEvent(run_id, workflow, version, "running", generation, parent_run_id=parent_run_id or None),
        )


def run_finished(
    rt: Runtime, run_id: str, status: str | None = None, error: dict[str, Any] | None = None
) -> None:
    """The run reached a terminal status (read from Redis when not given): once per generation."""
    if not listening("on_run_finish"):
        return
    labels = rt.state.labels(run_id)
    gen = labels.get("gen") or "1"
    if not rt.redis.set(
        rt.state.key(run_id, f"finished:g{gen}"), "1", nx=True, ex=rt.settings.finished_state_ttl
    ):
        return
    if error is None and labels.get("error"):
        error = json.loads(labels["error"])
    created = _num(labels.get(CREATED))
    now = time.time()
    emit(
        "on_run_finish",
        RunEvent(
            run_id,
            labels.get("workflow", ""),
            labels.get("version") or None,
            status or labels.get("status", ""),
            int(gen),
            now,
            duration=None if created is None else max(now - created, 0.0),
            error=error,
            parent_run_id=labels.get("parent_run") or None,
        ),
    )


# -- steps -----------------------------------------------------------------------------------
def _engine(queue: str | None, route: dict[str, Any] | None) -> str | None:
    if route and route.get("engine"):
        return str(route["engine"])
    parts = (queue or "").split(".")
    return parts[2] if len(parts) > 2 and parts[0] == "cap" else None


def step_dispatched(
    rt: Runtime,
    run_id: str,
    node: StepNode,
    chunk: int | None,
    task: str,
    generation: int,
    queue: str | None,
    route: dict[str, Any] | None,
    *,
    fused: bool = False,
) -> dict[str, str]:
    """Announce a step about to be published (or run here: ``fused``); the carrier middleware
    wrote (to send along)."""
    if not listening("on_step_dispatch"):
        return {}
    unit = node.id if chunk is None else f"{node.id}#{chunk}"
    capability = (node.options.get("routing") or {}).get("capability") or getattr(
        rt.app.tasks.get(node.task), "capability", None
    )
    event = StepEvent(
        run_id,
        unit,
        task,
        generation,
        queue=queue,
        capability=capability,
        engine=_engine(queue, route),
        fused=fused,
    )
    emit("on_step_dispatch", event)
    return {str(k): str(v) for k, v in event.carrier.items()}


def routed(
    run_id: str,
    step_id: str,
    routing: dict[str, Any],
    route: dict[str, Any],
    decided_in: float,
    tried: tuple[str, ...],
) -> None:
    if listening("on_route"):
        emit(
            "on_route",
            RouteEvent(
                run_id,
                step_id,
                str(routing.get("capability", "")),
                str(route.get("engine", "")),
                str(route.get("queue", "")),
                str(route.get("strategy", "")),
                str(route.get("reason", "")),
                decided_in,
                tuple(tried),
            ),
        )


@dataclass(slots=True)
class Delivery:
    """One worker-side delivery of a step: what its step events are built from."""

    run_id: str
    unit: str  # the step, or a map chunk "<step>#<n>"
    task: Any  # the task (its name and capability are read) or a task name
    generation: int
    attempt: int
    info: dict[str, Any]  # the claim's info: worker, queue, route, started_at
    carrier: Any = None  # the dispatch event's carrier, from the message headers

    def event(self, **extra: Any) -> StepEvent:
        info = self.info
        return StepEvent(
            self.run_id,
            self.unit,
            getattr(self.task, "name", None) or str(self.task or ""),
            self.generation,
            self.attempt,
            queue=info.get("queue"),
            worker=info.get("worker"),
            capability=getattr(self.task, "capability", None),
            engine=_engine(info.get("queue"), info.get("route")),
            carrier=dict(self.carrier) if isinstance(self.carrier, dict) else {},
            routes=tuple(journaled(info["route"], None)) if info.get("route") else (),
            **extra,
        )


def step_started(delivery: Delivery) -> None:
    if listening("on_step_start"):
        emit("on_step_start", delivery.event())


def success_announcer(delivery: Delivery, duration: float) -> Callable[[], None] | None:
    """What announces a step's success once its result is stored (None: nobody listens)."""
    if not listening("on_step_success"):
        return None

    def announce() -> None:
        emit("on_step_success", delivery.event(duration=duration, error=delivery.info.get("error")))

    return announce


def step_retried(delivery: Delivery, began: float, retry: Retry) -> None:
    """The body failed and Celery will run it again (autoretry or ``self.retry``)."""
    if not listening("on_step_retry"):
        return
    exc = retry.exc if isinstance(retry.exc, BaseException) else retry
    error = {**error_info(exc, delivery.task), "traceback": traceback_text(exc)}
    when = retry.when
    retry_in = (
        (when - datetime.now(when.tzinfo)).total_seconds() if isinstance(when, datetime) else _num(when)
    )
    event = delivery.event(duration=time.perf_counter() - began, error=error, retry_in=retry_in)
    emit("on_step_retry", event)


def step_failed(rt: Runtime, delivery: Delivery, error: dict[str, Any]) -> None:
    """A step failed for good (journaled by ``failure.fail_step``), with its error and traceback."""
    if not listening("on_step_failure"):
        return
    started = delivery.info.get("started_at")
    duration = None
    if started:
        duration = max(time.time() - datetime.fromisoformat(started).timestamp(), 0.0)
    delivery.attempt = rt.state.attempts(delivery.run_id).get(delivery.unit) or delivery.attempt
    emit("on_step_failure", delivery.event(duration=duration, error=error))


def step_progress(event: StepEvent, done: float, total: float | None, note: str | None) -> None:
    if listening("on_step_progress"):
        emit("on_step_progress", event, done, total, note)


# -- compensations ---------------------------------------------------------------------------
def compensation(
    hook: str,
    run_id: str,
    unit: str,
    task: str,
    attempt: int,
    key: str | None,
    worker: str | None,
    duration: float | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """``hook`` is ``on_compensation_start``, ``_success`` or ``_failure``."""
    if listening(hook):
        emit(
            hook, CompensationEvent(run_id, unit, task, attempt, key, worker, duration=duration, error=error)
        )
