"""Chain fusion: a step released in this worker, for this worker's queue, runs here without a broker hop.

When a delivered step completes and releases successors, one of them that would be published
to the very queue the delivery came from (a plain task step: no routing, no countdown, eta,
priority or expiry, no limits, no time limits, registered in this worker) is kept and run by
this process right after, through Celery's own tracer: the same ``task_prerun``/``postrun``
signals, retries (``self.retry()``, autoretry) and ``link_error`` errback as a delivered task.
The others are published as usual, so siblings still spread over the fleet. The kept step can
release one in turn, up to ``fuse_hops`` steps per delivery; none is kept once the delivery has
run ``fuse_budget`` seconds, so one run never holds a process for long.

What it saves per hop is everything around the step, not the step: the message's publish,
the broker's queue, the worker's fetch and reservation, the hand-off to a pool process and the
acknowledgement. Every step is still claimed, completed and journaled on its own; a fused step
is not a Celery task message, so its process sends the Celery task events a message of its
own would have had (taskevents.py): Flower lists it under its own task id, which the journal
keeps as its ``task_id``.

Crash safety: the delivery's message stays unacknowledged (``acks_late``) until its last fused
step ends. A fused step's claim names that delivery's task id (``info.delivery``, ``info.fused``),
so the heartbeat shows it held while it runs; if the worker dies, the message is delivered
again, the redelivery finds its own step done and dispatches every fused step it left
unfinished (:func:`orphans`, called by ``advance.recover``); the recovery sweep does the same
for any it misses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog
from celery import Task
from celery.app.trace import build_tracer

from canvasflow.config.queues import engine_of_queue
from canvasflow.workers.routing.router import sent
from canvasflow.workflows.runtime import events, publishing, taskevents
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepGraph, StepNode
from canvasflow.workflows.runtime.sending import arguments, decide_route, send_ready, send_step
from canvasflow.workflows.runtime.wire import HEADER, held_by, is_step, task_id_for

log = structlog.get_logger("canvasflow.fusion")


@dataclass
class _Next:
    run_id: str
    gen: int
    node: StepNode
    known: dict[str, Any]
    route: dict[str, Any] | None = None  # a routed step: the router's decision, made when it became ready


@dataclass
class Driver:
    """The delivery (one Celery message) that runs the steps fused into it."""

    delivery: str  # its task id: what the heartbeat shows held
    queue: str
    request: dict[str, Any]  # the fields a fused step's request copies from the delivery's
    outbox: taskevents.Outbox  # the Celery task events of its fused steps (Flower)
    started: float = field(default_factory=time.monotonic)
    hops: int = 0
    fusing: bool = False  # a fused step is running now (its claim names the delivery)
    carried: tuple[str, ...] = ()  # the bundled siblings its message carries
    pending: _Next | None = None


_current: ContextVar[Driver | None] = ContextVar("canvasflow_fusion", default=None)


def fused_delivery() -> str | None:
    """The delivery's task id while a fused step runs (its claim records it), else None."""
    d = _current.get()
    return d.delivery if d is not None and d.fusing else None


def _time_limited(rt: Runtime, task: Task) -> bool:
    conf = rt.app.conf
    return bool(conf.task_time_limit or conf.task_soft_time_limit or task.time_limit or task.soft_time_limit)


@contextmanager
def driving(rt: Runtime, task: Task, ref: dict[str, Any]) -> Iterator[Driver | None]:
    """Around the outermost step of a delivered message: run the siblings bundled with it
    (``ref["then"]``, see bundles.py) and fuse what its steps release.

    Yields None (no fusion) when fusion is off, the call is not a worker's delivery (eager,
    called directly) or a time limit applies: a fused step would run under the delivery's.
    Bundled siblings are then published instead, as are those left when the delivery ends
    with an error or has run ``fuse_budget`` seconds."""
    req = task.request
    queue = (req.delivery_info or {}).get("routing_key")
    if _current.get() is not None:  # a fused step: the outer delivery drives
        yield None
        return
    # taken out of the header: a retry of this step (Celery copies the request's headers) must
    # not carry its siblings again; a redelivery of the message still does
    then = [str(sid) for sid in ref.pop("then", None) or ()]
    if (
        rt.settings.fuse_hops <= 0
        or req.called_directly
        or req.is_eager
        or not req.id
        or not queue
        or _time_limited(rt, task)
        or any(req.timelimit or ())
        or getattr(task, "limits", ())  # its slot would be held while the fused steps run
    ):
        try:
            yield None
        finally:
            if then:
                _publish_ids(rt, ref["run"], int(ref["gen"]), then)
        return
    copied = {
        "hostname": req.hostname,
        "delivery_info": req.delivery_info,
        "reply_to": req.reply_to,
        "root_id": req.root_id or req.id,
        "origin": req.origin,
    }
    driver = Driver(req.id, queue, copied, taskevents.Outbox(rt.app), carried=tuple(then))
    run_id, gen = ref["run"], int(ref["gen"])
    token = _current.set(driver)
    try:
        yield driver
        while then or driver.pending is not None:
            if then and time.monotonic() - driver.started >= rt.settings.fuse_budget:
                _publish_ids(rt, run_id, gen, then)  # slow ones: the fleet takes the rest now
                then = []
                continue
            if then:
                graph = rt.graph(run_id, gen)
                nxt = _Next(run_id, gen, graph.steps[then.pop(0)], {})
                if not _fusable(rt, nxt.node, queue):  # e.g. not registered in this worker
                    _publish(rt, nxt)
                    continue
            else:
                assert driver.pending is not None
                nxt, driver.pending = driver.pending, None
            try:
                _run(rt, driver, nxt)
            except Exception:  # outside the step's body (the tracer keeps its errors): publish it
                log.exception("fused step could not run here; publishing it", run_id=nxt.run_id)
                _publish(rt, nxt)
    finally:
        _current.reset(token)
        driver.outbox.flush()  # the last fused step's outcome
        if then:  # the delivery failed (or was skipped) before running its siblings
            _publish_ids(rt, run_id, gen, then)
        if driver.pending is not None:  # the delivery failed after releasing it: publish it
            _publish(rt, driver.pending)


def keep(
    rt: Runtime, run_id: str, gen: int, graph: StepGraph, ready: list[str], step_id: str, encoded: str
) -> list[str]:
    """Of the steps ``step_id``'s completion released, take one to run here next; return those
    to publish. The kept one gets the result as a message would carry it: decoded from
    ``encoded``, its JSON (tuples become lists)."""
    d = _current.get()
    if d is None or d.pending is not None or graph.options.get("deadlines"):
        return ready
    if d.hops >= rt.settings.fuse_hops or time.monotonic() - d.started >= rt.settings.fuse_budget:
        return ready
    for sid in ready:
        node = graph.steps[sid]
        if node.kind != "task" or not fusable_task(rt, rt.app.tasks.get(node.task)):
            continue
        rest = [s for s in ready if s != sid]
        if set(node.options) == {"queue"} and node.options["queue"] in consumed(rt, d.queue):
            d.pending = _Next(run_id, gen, node, {step_id: json.loads(encoded)})
            return rest
        if "routing" in node.options and set(node.options) <= {
            "routing",
            "queue",
        }:  # decided now, as on publishing
            # near the step that just ran here (locality: docs/routing.md); counted when published
            route = decide_route(rt, run_id, node, prefer=engine_of_queue(d.queue), count=False)
            nxt = _Next(run_id, gen, node, {step_id: json.loads(encoded)}, route)
            if route["queue"] in consumed(rt, d.queue) and not route.get("workflow"):
                d.pending = nxt
            else:  # another worker's engine: published with this decision
                sent(rt.redis, rt.settings, route["engine"])
                _publish(rt, nxt)
            return rest
    return ready


def _fusable(rt: Runtime, node: StepNode, queue: str) -> bool:
    if (
        node.kind != "task"
        or set(node.options) != {"queue"}
        or node.options["queue"] not in consumed(rt, queue)
    ):
        return False
    return fusable_task(rt, rt.app.tasks.get(node.task))


_consumed: frozenset[str] | None = None


def consumed(rt: Runtime, queue: str) -> frozenset[str]:
    """The queues this worker consumes (its ``-Q``; every declared queue without one), and
    ``queue``: a step bound for one of them may run here as well as in any of its processes."""
    global _consumed
    if _consumed is None:
        try:
            _consumed = frozenset(rt.app.amqp.queues.consume_from)
        except Exception:  # an app without a queue table: the delivery's own queue only
            _consumed = frozenset()
    return _consumed | {queue}


def fusable_task(rt: Runtime, task: Task | None) -> bool:
    """A step task registered here with nothing a delivery of its own would enforce: no limits,
    no Celery rate limit, no time limit."""
    if task is None or not is_step(task):
        return False
    return not getattr(task, "limits", ()) and task.rate_limit is None and not _time_limited(rt, task)


def _run(rt: Runtime, driver: Driver, nxt: _Next) -> None:
    """Run one fused step through Celery's tracer, as a worker runs a delivered task."""
    node = nxt.node
    task = rt.app.tasks[node.task]
    try:
        args, kwargs = arguments(rt, nxt.run_id, nxt.node, nxt.known)
    except Exception:  # e.g. Redis lost a result: the ordinary path has its own recovery
        log.exception("fused step's arguments unreadable; publishing it", run_id=nxt.run_id, step_id=node.id)
        _publish(rt, nxt)
        return
    tid = task_id_for(nxt.run_id, node.id, nxt.gen)
    queue = nxt.route["queue"] if nxt.route else node.options["queue"]
    carrier = events.step_dispatched(
        rt, nxt.run_id, node, None, task.name, nxt.gen, queue, nxt.route, fused=True
    )
    request = {
        **driver.request,
        events.CARRIER_HEADER: carrier,  # e.g. a tracing context: the step's events hand it back
        "id": tid,
        "task": task.name,
        "parent_id": driver.delivery,
        "correlation_id": tid,
        "ignore_result": True,
        "errbacks": [rt.errback],
        "retries": 0,
        "is_eager": False,
        HEADER: {"run": nxt.run_id, "step": node.id, "gen": nxt.gen},
        # the queue it would have been published to: what the step's claim and journal record
        # (exchange '': a retry is published by queue name, as Celery does for the default exchange)
        "delivery_info": {**(driver.request["delivery_info"] or {}), "exchange": "", "routing_key": queue},
    }
    if nxt.route:
        request[HEADER]["route"] = nxt.route
    trace = task.__trace__ or build_tracer(
        task.name, task, rt.app.loader, driver.request["hostname"], app=rt.app
    )
    shown = taskevents.Step(driver.outbox, task, driver.request["hostname"], tid)
    taskevents.safely(shown.starting, args, kwargs, driver.request["root_id"], driver.delivery)
    driver.hops += 1
    driver.fusing = True
    try:
        traced = trace(tid, args, kwargs, request)
    finally:
        driver.fusing = False
    taskevents.safely(shown.ended, traced)


def _publish(rt: Runtime, nxt: _Next) -> None:
    if nxt.route is None:
        send_ready(rt, nxt.run_id, nxt.gen, rt.graph(nxt.run_id, nxt.gen), [nxt.node.id], nxt.known)
        return
    args, kwargs = arguments(rt, nxt.run_id, nxt.node, nxt.known)
    with publishing.batch(rt.app, rt.settings.publish_batch_size, 1):
        send_step(rt, nxt.run_id, nxt.gen, nxt.node, args, kwargs, route=nxt.route)


def _publish_ids(rt: Runtime, run_id: str, gen: int, step_ids: list[str]) -> None:
    """Publish bundled siblings as messages of their own (one pipeline, never bundled again)."""
    try:
        graph = rt.graph(run_id, gen)
    except KeyError:  # the run's state is gone: the sweep rebuilds it and dispatches them
        log.warning("bundled steps not published: run state gone", run_id=run_id, steps=step_ids)
        return
    send_ready(rt, run_id, gen, graph, [sid for sid in step_ids if sid in graph.steps])


def orphans(rt: Runtime, run_id: str, delivery: str) -> list[str]:
    """Steps fused into ``delivery`` that never finished (the worker running them died), but
    for the bundled siblings this redelivery runs itself."""
    states = rt.state.step_states(run_id)
    d = _current.get()
    own = set(d.carried) if d is not None and d.delivery == delivery else set()
    return sorted(
        sid
        for sid, info in rt.state.step_info(run_id).items()
        if info.get("fused") and held_by(info) == delivery and states.get(sid) == "running" and sid not in own
    )
