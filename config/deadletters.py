"""Dead letters: malformed messages a worker refused, kept where an operator can read them.

A message on a canvasflow queue that cannot be run is refused, recorded here, acknowledged,
and the worker goes on serving. Two places refuse:

* the worker's consumer, before any task code (:class:`DeadLetters`, a consumer bootstep):
  a body that is not JSON, a content type other than JSON (pickle), an unknown task name,
  a message that is not a Celery task message, a JSON body Celery cannot take apart (which
  would otherwise stop the consumer with "Unrecoverable error" and come back on restart);
* a step's delivery (``workers.step`` and the executor): a ``canvasflow`` header without
  its fields, an unknown run id, a step id not in the run's graph, a generation from the future.

The record is a JSON object ``{at, reason, task, task_id, queue, headers, body}`` (body cut at
2 KiB) pushed on the Redis list ``<key_prefix>:deadletters`` in the state Redis, trimmed to
``CANVASFLOW_DEADLETTER_MAX`` entries, and logged at WARNING (event ``message dead-lettered``).
``canvasflow deadletters [--json]`` lists them newest first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import structlog
from celery import bootsteps

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings

log = structlog.get_logger("canvasflow.deadletters")
BODY_LIMIT = 2048


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    return state_client(url)


def list_key() -> str:
    return f"{get_settings().key_prefix}:deadletters"


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "backslashreplace")
    text = value if isinstance(value, str) else repr(value)
    return text[:BODY_LIMIT]


def _safe(headers: Any) -> Any:
    """The headers as JSON (anything else as its repr), so the record always serializes."""
    try:
        return json.loads(json.dumps(headers, default=repr))
    except (TypeError, ValueError):
        return _text(headers)


def record(
    reason: str,
    *,
    task: str | None = None,
    task_id: str | None = None,
    queue: str | None = None,
    headers: Any = None,
    body: Any = None,
) -> dict[str, Any]:
    """Keep a refused message (bounded list) and log it at WARNING; never raises."""
    entry = {
        "at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "task": task,
        "task_id": task_id,
        "queue": queue,
        "headers": _safe(headers),
        "body": None if body is None else _text(body),
    }
    log.warning("message dead-lettered", reason=reason, task=task, task_id=task_id, queue=queue)
    s = get_settings()
    try:
        p = _client(s.redis_state_url).pipeline()
        p.lpush(list_key(), json.dumps(entry))
        p.ltrim(list_key(), 0, s.deadletter_max - 1)
        p.execute()
    except Exception as exc:  # the log line above stays; a dead letter must not stop the worker
        log.error("dead letter not stored", error=f"{type(exc).__name__}: {exc}")
    return entry


def recent(limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters, newest first."""
    raw = _client(get_settings().redis_state_url).lrange(list_key(), 0, max(limit, 1) - 1)
    return [json.loads(r) for r in raw]


def _from_message(reason: str, message: Any) -> None:
    headers = getattr(message, "headers", None)
    info = getattr(message, "delivery_info", None) or {}
    h = headers if isinstance(headers, dict) else {}
    record(
        reason,
        task=h.get("task"),
        task_id=h.get("id"),
        queue=info.get("routing_key"),
        headers=headers,
        body=getattr(message, "body", None),
    )


def _drop(message: Any) -> None:
    """Settle a refused message for good (rejected without requeue: the broker forgets it)."""
    try:
        if not message.acknowledged:
            message.reject(requeue=False)
    except Exception as exc:
        log.error("refused message not settled", error=f"{type(exc).__name__}: {exc}")


class DeadLetters(bootsteps.Step):
    """Consumer bootstep: every message the consumer refuses before any task runs is dead-lettered.

    Celery already acknowledges (or rejects without requeue) such messages and goes on; this
    wraps its handlers so that each is also recorded.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        decode, unknown, invalid, unknown_task = (
            parent.on_decode_error,
            parent.on_unknown_message,
            parent.on_invalid_task,
            parent.on_unknown_task,
        )

        def on_decode_error(message: Any, exc: BaseException) -> None:
            _from_message(f"undecodable body ({type(exc).__name__}: {exc})", message)
            decode(message, exc)

        def on_unknown_message(body: Any, message: Any) -> None:
            _from_message("not a Celery task message", message)
            unknown(body, message)

        def on_invalid_task(body: Any, message: Any, exc: BaseException) -> None:
            _from_message(f"refused content ({type(exc).__name__}: {exc})", message)
            invalid(body, message, exc)

        def on_unknown_task(body: Any, message: Any, exc: BaseException) -> None:
            _from_message(f"unknown task ({exc})", message)
            unknown_task(body, message, exc)

        create = parent.create_task_handler

        def create_task_handler(*args: Any, **kwargs: Any) -> Any:
            handler = create(*args, **kwargs)

            def on_task_received(message: Any) -> Any:
                try:
                    return handler(message)
                except Exception as exc:  # Celery would stop the consumer: "Unrecoverable error"
                    lost = (*getattr(parent, "connection_errors", ()), *getattr(parent, "channel_errors", ()))
                    if lost and isinstance(exc, lost):
                        raise  # the broker went away: Celery's reconnection handles it
                    _from_message(f"malformed task message ({type(exc).__name__}: {exc})", message)
                    _drop(message)
                    return None

            return on_task_received

        parent.create_task_handler = create_task_handler
        parent.on_decode_error = on_decode_error
        parent.on_unknown_message = on_unknown_message
        parent.on_invalid_task = on_invalid_task
        parent.on_unknown_task = on_unknown_task
