"""Deadlines: how long a step may wait in its queue, wait for a response, or a run may take.

Each deadline is one countdown message to ``canvasflow.deadline`` on the control queue,
published when the clock starts; when it fires, one Lua script checks the state and fails
what is still where the deadline forbids it to be (nothing is polled, and a deadline met
costs one message that changes nothing):

* ``schedule_to_start`` -- published with the step: still ``queued`` (no worker took it)
  when it fires, the step fails;
* ``response`` -- ``wait_for_response(name, timeout=...)``: still waiting for its signal,
  the step fails;
* ``timeout`` -- published when the run starts (or resumes): still active, the run fails.

A failed step or run then rolls back like any failure, with the error type
``DeadlineExceeded`` and a message naming the deadline. ``start_to_close`` is not here: the
compiler turns it into Celery's ``soft_time_limit`` (and a hard ``time_limit`` a little
later), which interrupts the body in its own process, so the step's retries apply.
"""

from __future__ import annotations

import json

import structlog
from celery import shared_task

from canvasflow.config.celery_app import DEADLINE_TASK
from canvasflow.config.errors import DeadlineExceeded
from canvasflow.workflows.runtime.context import Runtime, runtime
from canvasflow.workflows.runtime.control import rollback_needed
from canvasflow.workflows.runtime.failure import close_failed, fail_step, failure_status
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.journal import sync_steps
from canvasflow.workflows.runtime.outcome import skip_unrun

log = structlog.get_logger("canvasflow.deadlines")

# fail a step that is still in one of the given states, in the current generation of an active run
_EXPIRE_STEP = """
local meta = redis.call('HMGET', KEYS[1], 'status', 'gen')
if meta[2] ~= ARGV[2] or (meta[1] ~= 'running' and meta[1] ~= 'waiting') then return 0 end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
for i = 3, #ARGV do
  if (ARGV[i] == '' and not cur) or cur == ARGV[i] then
    redis.call('HSET', KEYS[2], ARGV[1], 'failed')
    return 1
  end
end
return 0
"""

# a step waiting for a signal takes it (waiting -> running), unless its deadline took it first
_TAKE_WAITING = """
if redis.call('HGET', KEYS[1], ARGV[1]) == 'waiting' then
  redis.call('HSET', KEYS[1], ARGV[1], 'running')
  return 1
end
return 0
"""


# -- clocks started --------------------------------------------------------------------------
def after_dispatch(rt: Runtime, run_id: str, gen: int, graph: StepGraph, step_ids: list[str]) -> None:
    """Steps were published: start their ``schedule_to_start`` clocks."""
    limits = graph.options.get("deadlines") or {}
    for sid in step_ids:
        seconds = (limits.get(sid) or {}).get("schedule_to_start")
        if seconds and graph.steps[sid].kind == "task":
            _arm(rt, run_id, gen, "schedule_to_start", seconds, sid)


def run_started(rt: Runtime, run_id: str, gen: int, graph: StepGraph) -> None:
    seconds = graph.options.get("timeout")
    if seconds:
        _arm(rt, run_id, gen, "timeout", float(seconds), None)


def waiting_for_response(rt: Runtime, run_id: str, gen: int, step_id: str, seconds: float | None) -> None:
    if seconds:
        _arm(rt, run_id, gen, "response", float(seconds), step_id)


def take_waiting(rt: Runtime, run_id: str, step_id: str) -> bool:
    """A signal arrived for a waiting step: True when it takes the step (its deadline did not)."""
    return bool(rt.redis.eval(_TAKE_WAITING, 1, rt.state.key(run_id, "st"), step_id))


def _arm(rt: Runtime, run_id: str, gen: int, kind: str, seconds: float, step_id: str | None) -> None:
    rt.app.send_task(
        DEADLINE_TASK,
        args=[run_id, gen, kind, seconds, step_id],
        countdown=seconds,
        queue=rt.settings.control_queue,
        ignore_result=True,
        add_to_parent=False,
    )


# -- a clock fires -----------------------------------------------------------------------------
_STATES_BEFORE = {"schedule_to_start": ("", "queued"), "response": ("waiting",)}
_WHAT = {
    "schedule_to_start": "no worker started it within {s:g}s (does a worker consume its queue?)",
    "response": "its response did not arrive within {s:g}s",
    "timeout": "the run did not finish within {s:g}s",
}


def expire(rt: Runtime, run_id: str, gen: int, kind: str, seconds: float, step_id: str | None) -> bool:
    """Fail what is still where ``kind`` forbids it to be; True when something failed."""
    exc = DeadlineExceeded(f"{kind}: {_WHAT[kind].format(s=seconds)}")
    if step_id is None:
        return _expire_run(rt, run_id, gen, exc)
    keys = [rt.state.key(run_id, "meta"), rt.state.key(run_id, "st")]
    if not rt.redis.eval(_EXPIRE_STEP, 2, *keys, step_id, str(gen), *_STATES_BEFORE[kind]):
        return False
    # a message still in its queue is skipped at its claim (the step is failed, the run not active)
    log.warning("deadline passed", run_id=run_id, step_id=step_id, deadline=kind, seconds=seconds)
    fail_step(rt, run_id, step_id, gen, None, exc)
    return True


def _expire_run(rt: Runtime, run_id: str, gen: int, exc: DeadlineExceeded) -> bool:
    labels = rt.state.labels(run_id)
    if labels.get("gen") != str(gen):
        return False
    graph = rt.graph(run_id, gen)
    target = failure_status(graph)
    if not rt.state.transition(run_id, ("running", "waiting"), target):
        return False
    error = {"type": type(exc).__name__, "message": str(exc), "retryable": False}
    log.warning("run deadline passed", run_id=run_id, error=error["message"])
    rt.redis.hset(rt.state.key(run_id, "meta"), "error", json.dumps(error))
    sync_steps(rt, run_id)
    if target == "failed":
        skip_unrun(rt, run_id)
    rt.store.transition_run(run_id, ("running", "waiting"), target, error=error)
    if target == "compensating":
        rollback_needed(rt, run_id, gen)
    else:
        close_failed(rt, run_id, error)
    return True


@shared_task(name=DEADLINE_TASK, ignore_result=True, acks_late=True)  # control queue: task_routes
def deadline(run_id: str, gen: int, kind: str, seconds: float, step_id: str | None = None) -> bool:
    """A deadline's countdown ended: fail the step or run if it is still where it must not be."""
    return expire(runtime(), run_id, int(gen), kind, float(seconds), step_id)
