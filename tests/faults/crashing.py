"""Steps and kill points for crash tests, imported by the workers of tests/faults.

Keyed steps make their side effect once per idempotency key (``SET NX``), as the contract
asks authors to, and record every key they were called with, so a test sees both that a
body ran again and that its effect happened once.

Kill points SIGKILL the worker process at an exact place inside canvasflow's rollback
(like a failpoint): the test names the point and the run in Redis, and the wrapped
function kills its own process the first time it gets there for that run. They wrap
module functions at import, in the worker only (this module is in its workflow modules).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from canvasflow.compensation import compensates, rollback
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step
from canvasflow.workflows.runtime.execution import context


def _redis() -> redis.Redis:
    return state_client(get_settings().redis_state_url, decode_responses=True)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# the effect and its key in one step, as an effect and its key in one database transaction:
# a process killed between a SET NX and the RPUSH would leave a key whose effect never happened
# (seen under random kills on a loaded machine: a step "succeeded" with its effect missing)
_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 600) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return 0
"""


def _effect_once(log: str, kind: str, label: str) -> None:
    """Record this call's key; apply the effect (append to the log) once per key."""
    r, key = _redis(), context().idempotency_key
    r.rpush(f"{log}:keys", f"{kind}:{label}:{key}")
    # ``{log}`` hashes like ``log``: one slot for both keys on a Redis Cluster
    r.eval(_ONCE, 2, f"{{{log}}}:effect:{key}", log, f"{kind}:{label}")


def _wait_for_status(run_id: str, status: str, timeout: float = 20.0) -> None:
    from canvasflow.workflows.runtime.context import runtime

    deadline = time.monotonic() + timeout
    while runtime().state.status(run_id) != status and time.monotonic() < deadline:
        time.sleep(0.05)


@step(name="crash.keyed", capability="demo")
def keyed(
    *parents: Any,
    label: str,
    log: str,
    fail: bool = False,
    sleep: float = 0.0,
    die_once_when: str | None = None,
    undo_sleep: float = 0.0,
) -> str:
    """``die_once_when=STATUS``: after the effect, wait until the run is STATUS and kill this
    process (first delivery only): an effect applied by a body that never completed. Each
    body's start is logged (``<log>:starts``), so a test can tell how long a rerun waited."""
    _redis().rpush(f"{log}:starts", f"{label} {time.time():.3f}")
    if sleep:
        time.sleep(sleep)
    if fail:
        raise RuntimeError(f"{label} failed on purpose")
    _effect_once(log, "do", label)
    if die_once_when and _redis().set(f"{log}:died:{label}", 1, nx=True, ex=600):
        _wait_for_status(context().run_id, die_once_when)
        _die()
    return label


@compensates(keyed, name="crash.unkeyed", retries=2, retry_backoff=False, default_retry_delay=0.05)
def unkeyed(result: Any, *parents: Any, label: str, log: str, undo_sleep: float = 0.0, **_: Any) -> None:
    """Undo with the effect applied first, then ``undo_sleep`` (a window to kill it in)."""
    _effect_once(log, "undo", label)
    _redis().rpush(f"{log}:started", f"{label}:{os.getpid()}")
    if undo_sleep:
        time.sleep(undo_sleep)


@step(name="crash.keyed_once", capability="demo")
def keyed_once(*parents: Any, label: str, log: str, undo_sleep: float = 0.0) -> str:
    _effect_once(log, "do", label)
    return label


@compensates(keyed_once, name="crash.unkeyed_once", retries=0, at_most_once=True)
def unkeyed_once(result: Any, *parents: Any, label: str, log: str, undo_sleep: float = 0.0) -> None:
    _redis().rpush(f"{log}:started", f"{label}:{os.getpid()}")
    if undo_sleep and _redis().set(f"{log}:slept:{label}", 1, nx=True, ex=600):
        time.sleep(undo_sleep)
    _effect_once(log, "undo", label)


# ---- kill points inside the rollback ----------------------------------------------------------
def arm(run_id: str, point: str) -> None:
    """Make the next worker that reaches ``point`` for ``run_id`` kill its own process."""
    _redis().set(f"killpoint:{run_id}:{point}", 1, ex=600)


def _reached(run_id: str, point: str) -> bool:
    return bool(_redis().delete(f"killpoint:{run_id}:{point}"))


_original_dispatch = rollback._dispatch
_original_progress = rollback.progress


def _dispatch_then_die(rt: Any, run_id: str, gen: int, graph: Any, unit: str, again: bool = False) -> None:
    # marked dispatched, message not yet published
    if _reached(run_id, "before_publish"):
        _die()
    _original_dispatch(rt, run_id, gen, graph, unit, again)


def _progress_then_die(rt: Any, run_id: str, gen: int) -> None:
    # the rollback's last unit has written its final state; the run is not closed yet
    states = rollback.comp_states(rt, run_id)
    finished = states and all(s in ("compensated", "compensation_failed") for s in states.values())
    if finished and _reached(run_id, "before_close"):
        _die()
    _original_progress(rt, run_id, gen)


if os.environ.get("CF_TEST_KILLPOINTS") == "1":  # set only for the workers of kill-point tests
    rollback._dispatch = _dispatch_then_die
    rollback.progress = _progress_then_die


# ---- a step that reports its execution context ------------------------------------------------
@step(name="crash.probe", capability="demo")
def probe(*parents: Any, note: str = "") -> dict[str, Any]:
    """Returns what ``context()`` says, writes run metadata, and logs one line."""
    import structlog

    ctx = context()
    seen = dict(ctx.metadata)
    ctx.metadata[f"seen_by_{ctx.step_id}"] = note
    structlog.get_logger("tests.probe").info("probe ran", note=note)
    return {
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "generation": ctx.generation,
        "attempt": ctx.attempt,
        "key": ctx.idempotency_key,
        "workflow": ctx.workflow,
        "version": ctx.version,
        "queue": ctx.queue,
        "worker": ctx.worker,
        "parent_run_id": ctx.parent_run_id,
        "parent_step": ctx.parent_step,
        "lineage": [list(x) for x in ctx.lineage],
        "metadata_before": seen,
    }


def _ctx_parent() -> Any:
    from celery import chain

    return chain(probe.s(note="first"), probe.s(note="second"), ctx_child.s())


from canvasflow.workflows.authoring.definition import Workflow  # noqa: E402  (the probe's workflows)

ctx_child = Workflow("tests.ctx.child", "3", build=lambda: probe.s(note="child"))
ctx_parent = Workflow("tests.ctx.parent", "2", build=_ctx_parent)
