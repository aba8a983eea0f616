"""What differs between the brokers canvasflow runs on: Redis and RabbitMQ (AMQP).

Two jobs, both keyed on the broker URL's scheme:

* :func:`broker_options`: the Celery settings that only make sense for one broker (Redis's
  visibility timeout and unacked restore; AMQP's publisher confirms and heartbeats), applied
  by ``config.celery_app.configure`` after the common ones;
* :func:`queue_stats`: each queue's depth and consumers, asked of the broker itself (a passive
  ``queue_declare``: RabbitMQ answers with its message and consumer counts; kombu's Redis
  transport with the length of the queue's lists, and no consumers, which then come from the
  workers' ``active_queues`` replies).

Why these choices (docs/brokers.md says more):

* **RabbitMQ, classic durable queues.** Quorum queues replicate across a cluster but do not
  support global QoS, message priorities (before RabbitMQ 4.0) or Celery's ETA/countdown
  retries without its "native delayed delivery" (topic exchanges; ours are direct); on one
  node they add nothing. Classic queues are durable, and RabbitMQ returns a dead consumer's
  unacked messages at once. A vhost whose *default* queue type is quorum breaks Celery's
  workers (they ask for global QoS, which quorum queues refuse), and on explicit quorum
  queues Celery 5.7 loses retries delayed by less than a second (tried: docs/brokers.md).
* **Publisher confirms** (``confirm_publish``): a step dispatch returns only once RabbitMQ
  has taken the message, so a broker that fails mid-publish raises instead of losing a step.
* **Heartbeats** every 30 s: a worker on a dead TCP connection (a NAT or load balancer that
  dropped it silently) notices within about a minute, reconnects, and RabbitMQ requeues what
  it held.
* **Long steps and ``consumer_timeout``**: RabbitMQ closes a channel whose delivery stays
  unacknowledged longer than its ``consumer_timeout`` (30 min by default). Steps ack late
  (after they finish), so a step longer than that is redelivered forever. Set
  ``consumer_timeout`` in rabbitmq.conf above the longest step.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from celery import Celery

from canvasflow.config.queues import REDIS_PRIORITY_STEPS
from canvasflow.config.redis_sentinel import is_sentinel_url
from canvasflow.config.redis_transport import TRANSPORTS
from canvasflow.config.settings import Settings

BrokerKind = Literal["redis", "amqp", "other"]

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
REDIS_SCHEMES = ("redis", "rediss", "sentinel", "socket")
AMQP_HEARTBEAT_S = 30.0


def broker_kind(url: str) -> BrokerKind:
    """``redis``, ``amqp`` (RabbitMQ) or ``other`` (e.g. ``memory://``), from the URL's scheme."""
    scheme = url.partition("://")[0].lower().split("+", 1)[0] if "://" in url else ""
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in REDIS_SCHEMES:
        return "redis"
    return "other"


def redis_transport(url: str) -> str | None:
    """canvasflow's kombu transport for a Redis URL (config/redis_transport.py: a worker that
    outlives a broker restart), or None for any other broker."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    return TRANSPORTS.get(scheme)


def broker_options(s: Settings) -> dict[str, Any]:
    """Celery settings for the configured broker only (the common ones live in celery_app)."""
    kind = broker_kind(s.broker_url)
    # every key is set for every broker: settings applied again (another broker) leave nothing behind
    if kind == "redis":
        sentinel = {"master_name": s.sentinel_master} if is_sentinel_url(s.broker_url) else {}
        return {
            "broker_transport": redis_transport(s.broker_url),
            "task_queue_max_priority": None,
            "broker_transport_options": {
                **sentinel,
                "visibility_timeout": s.visibility_timeout,
                "unacked_restore_interval": s.unacked_restore_interval,
                "unacked_restore_throttle": 1,
                # kombu holds a global lock while it restores; a worker killed holding it
                # would stop every restore for kombu's default 300 s
                "unacked_mutex_expire": s.unacked_mutex_expire,
                "socket_connect_timeout": s.broker_timeout,
                "socket_timeout": max(s.broker_timeout, 5.0),
                # one list per step, read lowest first: canvasflow sends 9 - priority (runtime/priorities.py)
                "priority_steps": list(REDIS_PRIORITY_STEPS),
            },
        }
    if kind == "amqp":
        # x-max-priority on the queues canvasflow declares; off by default: RabbitMQ refuses to
        # redeclare an existing queue with other arguments (docs/brokers.md, "Priorities")
        return {
            "broker_transport": None,
            "task_queue_max_priority": s.queue_max_priority or None,
            "broker_transport_options": {"confirm_publish": True},
            "broker_heartbeat": AMQP_HEARTBEAT_S,
            # on connection loss RabbitMQ requeues the running steps' messages at once: a task
            # left running beside its redelivered copy would do the work twice
            "worker_cancel_long_running_tasks_on_connection_loss": True,
            "worker_detect_quorum_queues": True,  # per-consumer QoS on queues declared quorum
        }
    return {"broker_transport": None, "task_queue_max_priority": None, "broker_transport_options": {}}


def result_backend_options(s: Settings, url: str) -> dict[str, Any]:
    """Celery's ``sentinel://`` result backend finds its primary by ``master_name``."""
    return {"master_name": s.sentinel_master} if is_sentinel_url(url) else {}


@dataclass(frozen=True)
class QueueStats:
    """One queue as the broker sees it: messages waiting (not yet delivered) and consumers."""

    queue: str
    depth: int
    consumers: int
    exists: bool = True


def queue_stats(app: Celery, queues: list[str], *, timeout: float = 1.0) -> list[QueueStats]:
    """Depth and consumers of each queue, from the broker's own API (a passive declare).

    A queue the broker does not know (never declared on RabbitMQ; empty on Redis, where a
    queue is just its lists) has depth 0. Redis has no notion of consumers, so there they are
    the workers that answer ``active_queues`` within ``timeout``."""
    from amqp.exceptions import NotFound
    from kombu.exceptions import ChannelError

    out: list[QueueStats] = []
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        counts_consumers = conn.transport.driver_type == "amqp"
        for name in queues:
            channel = conn.channel()
            try:
                ok = channel.queue_declare(queue=name, passive=True)
                out.append(QueueStats(name, int(ok.message_count), int(ok.consumer_count)))
            except (NotFound, ChannelError):
                out.append(QueueStats(name, 0, 0, exists=False))
            finally:
                with contextlib.suppress(Exception):  # RabbitMQ closes it itself after NOT_FOUND
                    channel.close()
    if counts_consumers:
        return out
    consumers = _consumers_from_workers(app, timeout)
    return [QueueStats(q.queue, q.depth, consumers.get(q.queue, 0), q.exists) for q in out]


def _consumers_from_workers(app: Celery, timeout: float) -> dict[str, int]:
    """Queue -> how many workers consume it, from the workers that answer in time."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    counts: dict[str, int] = {}
    for queues in replies.values():
        for q in queues or []:
            counts[q["name"]] = counts.get(q["name"], 0) + 1
    return counts
