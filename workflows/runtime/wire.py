"""The message vocabulary: what a step message carries, the task names, ids and size limit.

A step message names its run in the ``canvasflow`` header (:data:`HEADER`): ``{"run": str,
"step": str, "gen": int, "chunk": int?, "then": [str]?, "route": {...}?}``. Its task id is
:func:`task_id_for` the step. A header without those fields, an unknown run, a step id not in
the run's graph or a generation the run has not reached is not executed: the message is
dead-lettered (:mod:`canvasflow.config.deadletters`), acknowledged, and the worker goes on.

The leaf of the runtime: every other module may import it; it imports only ``config``.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore

from canvasflow.config import deadletters
from canvasflow.config.errors import PayloadTooLarge
from canvasflow.config.settings import get_settings

HEADER = "canvasflow"  # the message header naming a step's run, step and generation

# canvasflow's own task names
MAP_TASK = "canvasflow.map"  # a map step (compiled to a fan-out of chunks)
CHUNK_TASK = "canvasflow.chunk"  # one chunk of a map step
SIGNAL_TASK = "canvasflow.wait_signal"  # a step completed by a signal
SLEEP_TASK = "canvasflow.sleep"  # a durable timer: completed by the timer service (runtime/timers.py)
WORKFLOW_TASK = "canvasflow.subworkflow"  # a step run as a child run
PARALLEL_TASK = "canvasflow.parallel_capability"  # expanded at compile time (runtime/parallel.py)
AGGREGATE_TASK = "canvasflow.aggregate"  # the join of a parallel_capability
ACTION_TASK = "canvasflow.action.{}"  # one action task per capability (workers/actions.py)
ACTION_PREFIX = ACTION_TASK.format("")
ERRBACK_TASK = "canvasflow.step_failed"  # the link_error errback every step carries

STEP_MARKER = "canvasflow_step"  # a class attribute of every step task (workers/step.py StepTask)


def is_step(task: Any) -> bool:
    """Whether ``task`` is a canvasflow step (a ``StepTask``): asked of the task, so the runtime
    need not know the class."""
    return bool(getattr(task, STEP_MARKER, False))


def task_id_for(run_id: str, step_id: str, generation: int, chunk: int | None = None) -> str:
    """The Celery task id of a step's message (of one chunk of a map step)."""
    tid = f"{run_id}-{step_id}-g{generation}"
    return tid if chunk is None else f"{tid}-c{chunk}"


def held_by(info: dict[str, Any]) -> str | None:
    """The task id of the message a step's claim ``info`` runs in: for a fused or carried step
    the delivery it ran in (``delivery``; claims written before it was kept named that one
    their ``task_id``), else the step's own."""
    return info.get("delivery") or info.get("task_id")


def carried_ids(header: Any) -> list[str]:
    """Task ids of the siblings a message's ``canvasflow`` header carries (none if malformed)."""
    if not isinstance(header, dict) or not isinstance(header.get("then"), list):
        return []
    run, gen = header.get("run"), header.get("gen")
    if not isinstance(run, str) or not isinstance(gen, int):
        return []
    return [task_id_for(run, sid, gen) for sid in header["then"] if isinstance(sid, str)]


SEND_SIGNAL_TASK = "canvasflow.send_signal"  # a step sending a signal to a run (workflows/tasks.py)
ID_LIMIT = 200
THEN_LIMIT = 1000  # siblings one message may carry (bundles.py)


def header_problem(ref: Any) -> str | None:
    """Why a ``canvasflow`` header is malformed, or None when it has every field, well typed."""
    if not isinstance(ref, dict):
        return f"canvasflow header is not an object: {type(ref).__name__}"
    for name in ("run", "step"):
        value = ref.get(name)
        if not isinstance(value, str) or not value or len(value) > ID_LIMIT:
            return f"canvasflow header field {name!r} must be a non-empty string, got {value!r}"
    gen = ref.get("gen")
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        return f"canvasflow header field 'gen' must be an integer >= 0, got {gen!r}"
    chunk = ref.get("chunk")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0):
        return f"canvasflow header field 'chunk' must be an integer >= 0, got {chunk!r}"
    then = ref.get("then")
    if then is not None and (
        not isinstance(then, list)
        or len(then) > THEN_LIMIT
        or not all(isinstance(s, str) and s and len(s) <= ID_LIMIT for s in then)
    ):
        return f"canvasflow header field 'then' must be a list of at most {THEN_LIMIT} step ids"
    return None


def refuse(task: Task, reason: str, ref: Any, args: Any = None, kwargs: Any = None) -> NoReturn:
    """Dead-letter this delivery and end it without running it (Ignore: acknowledged, no errback)."""
    req = task.request
    deadletters.record(
        reason,
        task=task.name,
        task_id=getattr(req, "id", None),
        queue=(getattr(req, "delivery_info", None) or {}).get("routing_key"),
        headers={"canvasflow": ref},
        body=json.dumps({"args": args, "kwargs": kwargs}, default=repr),
    )
    raise Ignore()


def check_payload(what: str, encoded: str) -> str:
    """``encoded`` (JSON text) unless it is over CANVASFLOW_MAX_PAYLOAD_BYTES: then PayloadTooLarge."""
    limit = get_settings().max_payload_bytes
    size = len(encoded) if encoded.isascii() else len(encoded.encode())
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size} bytes of JSON, over CANVASFLOW_MAX_PAYLOAD_BYTES={limit}: pass large "
            "values by reference (key = canvasflow.blobs.put(data); canvasflow.blobs.get(key))"
        )
    return encoded


def encode_result(step_id: str, value: Any) -> str:
    """A step's result as the JSON the journal and its successors' messages carry."""
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"step {step_id} returned a value that is not JSON: {exc}") from None
    return check_payload(f"the result of step {step_id}", encoded)


def check_value(what: str, value: Any) -> None:
    """Refuse ``value`` when its JSON is over the limit (values that are not JSON pass: others judge)."""
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        return
    check_payload(what, encoded)


def journaled_task(task: str, args: list[Any]) -> str:
    """The name a step is journaled under: an action step's ``<capability>.<action>`` (its first
    argument, a literal), any other step's task."""
    if task.startswith(ACTION_PREFIX) and args and isinstance(args[0], dict):
        action = args[0].get("v")
        if isinstance(action, str):
            return f"{task[len(ACTION_PREFIX) :]}.{action}"
    return task
