"""What a step message must carry before the executor claims it, and the payload size limit.

A step message names its run in the ``canvasflow`` header: ``{"run": str, "step": str,
"gen": int, "chunk": int?}``. A header without those fields, an unknown run, a step id not
in the run's graph or a generation the run has not reached is not executed: the message is
dead-lettered (:mod:`canvasflow.config.deadletters`), acknowledged, and the worker goes on.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore

from canvasflow.config import deadletters
from canvasflow.config.errors import PayloadTooLarge
from canvasflow.config.settings import get_settings

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


def check_value(what: str, value: Any) -> None:
    """Refuse ``value`` when its JSON is over the limit (values that are not JSON pass: others judge)."""
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        return
    check_payload(what, encoded)
