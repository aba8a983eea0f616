"""Is a task's message still waiting on the broker? (the sweep asks before publishing a step again)"""

from __future__ import annotations

import json

from canvasflow.config.queues import REDIS_PRIORITY_STEPS, redis_lists
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.runtime.wire import HEADER, carried_ids


def on_broker(rt: Runtime, task_ids: set[str], queues: set[str]) -> set[str]:
    """The ids among ``task_ids`` whose message may wait in one of ``queues`` or a declared queue.

    Redis transport: the queue lists are searched for each id. Other brokers (AMQP) cannot be
    searched: an id counts as queued unless its queue is empty (RabbitMQ requeues a dead
    consumer's unacked messages itself, so this only catches messages that are really gone)."""
    if not task_ids:
        return set()
    conf = rt.app.conf
    names = {q.name for q in (conf.task_queues or [])} | queues
    names |= {conf.task_default_queue, rt.settings.control_queue}
    if not searchable(rt):
        return set(task_ids) if any(_depth(rt, q) != 0 for q in queues or names) else set()
    steps = rt.app.conf.broker_transport_options.get("priority_steps") or REDIS_PRIORITY_STEPS
    keys = [key for n in names for key in redis_lists(n, steps)]
    found: set[str] = set()
    with rt.app.connection_for_read() as conn:
        client = conn.default_channel.client
        for key in keys:
            for start in range(0, int(client.llen(key)), 1000):
                for raw in client.lrange(key, start, start + 999):
                    ids = _message_ids(raw)
                    if ids is not None:
                        found |= ids & task_ids
                    else:  # not a protocol-2 message: search its text
                        text = as_text(raw)
                        found |= {t for t in task_ids if t in text}
    return found


def searchable(rt: Runtime) -> bool:
    """Can the broker's queues be searched for a message (Redis: lists), or not (RabbitMQ)?"""
    return str(rt.app.conf.broker_url).startswith(("redis://", "rediss://", "unix://", "sentinel://"))


def _message_ids(raw: bytes | str) -> set[str] | None:
    """The task ids a kombu message (as the Redis transport stores it) stands for: its own, and
    the bundled siblings its ``canvasflow`` header carries; None when it cannot be parsed."""
    try:
        headers = json.loads(raw)["headers"]
        tid = headers["id"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(tid, str):
        return None
    return {tid, *carried_ids(headers.get(HEADER))}


def _depth(rt: Runtime, queue: str) -> int | None:
    """Messages ready in an AMQP queue (None when it cannot be told)."""
    try:
        with rt.app.connection_for_read() as conn:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:
        return None
