"""The heartbeat thread: a worker node's main process writes its beat (workers/beats.py) every
interval, with the tasks it holds, until the worker stops."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
import structlog

from canvasflow.config.queues import engines_in
from canvasflow.workers.beats import RETRY_WHILE_DOWN, HasRedis, Serving, clear_beat, timing, write_beat
from canvasflow.workflows.runtime.wire import HEADER, carried_ids

log = structlog.get_logger("canvasflow.heartbeat")


def _held_by_this_node(consumer: Any) -> list[str]:
    """Ids of the tasks this node holds: Celery's requests (reserved, scheduled, running), those
    waiting in a rate limit's token bucket (not among the requests until a token frees them), and
    the siblings their bundles carry."""
    from celery.worker import state

    for _ in range(5):  # Celery's dict changes under us: copy it again
        try:
            requests = [*state.requests.values(), *_waiting_for_a_token(consumer)]
        except RuntimeError:
            continue
        held = {r.id for r in requests}
        for r in requests:  # the siblings a bundle's message carries are held with it
            held.update(carried_ids((getattr(r, "request_dict", None) or {}).get(HEADER)))
        return sorted(held)
    return []


def _waiting_for_a_token(consumer: Any) -> list[Any]:
    """Requests a rate-limited task's token bucket holds (``consumer.task_buckets``)."""
    buckets = list((getattr(consumer, "task_buckets", None) or {}).values())
    return [item[0] for bucket in buckets if bucket is not None for item in list(bucket.contents)]


def _pool_pids(consumer: Any) -> list[int]:
    procs = getattr(getattr(getattr(consumer, "pool", None), "_pool", None), "_pool", None) or []
    return [int(p.pid) for p in procs if getattr(p, "pid", None)]


def _queues_of(consumer: Any) -> tuple[str, ...]:
    return tuple(q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", []))


def _concurrency(consumer: Any) -> int:
    return int(getattr(getattr(consumer, "controller", None), "concurrency", 1) or 1)


def _running_here() -> int:
    from celery.worker import state

    return len(state.active_requests)


class HeartbeatThread(threading.Thread):
    """Beats every interval (see :func:`timing`) until :meth:`stop`; never raises.

    ``after_beat`` (given the node's :class:`Serving`) runs after each beat: an engine worker
    takes over steps there (:mod:`canvasflow.workers.routing.takeover`)."""

    def __init__(
        self,
        rt: HasRedis,
        hostname: str,
        consumer: Any,
        after_beat: Callable[[Serving], None] | None = None,
    ) -> None:
        super().__init__(name="canvasflow-heartbeat", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self.consumer = consumer
        self.after_beat = after_beat
        queues = _queues_of(consumer)
        self.serving = Serving(queues, tuple(engines_in(list(queues))), _concurrency(consumer))
        self.interval, _ = timing(rt.settings, bool(self.serving.engines))
        self._stop_event = threading.Event()

    def beat_once(self) -> Serving:
        pids = [os.getpid(), *_pool_pids(self.consumer)]
        serving = Serving(self.serving.queues, self.serving.engines, self.serving.consumers, _running_here())
        held = _held_by_this_node(self.consumer)
        write_beat(self.rt.redis, self.rt.settings, self.hostname, pids, held, serving)
        return serving

    def start(self) -> None:
        """Write the first beat before returning, then beat in the background.

        Started from ``worker_ready``, before the consumer's loop runs: once the node answers a
        ping or takes a message, its beat is in Redis, so a run started right then finds the
        queues it consumes (:mod:`canvasflow.workers.routing.known`) and the sweep finds it live.
        """
        with contextlib.suppress(redis.RedisError, OSError):  # Redis away: the loop keeps trying
            self.beat_once()
        super().start()

    def run(self) -> None:
        failing = False
        while not self._stop_event.is_set():
            try:
                serving = self.beat_once()
                if failing:
                    log.info("heartbeat written again", hostname=self.hostname)
                failing = False
                if self.after_beat is not None:
                    self.after_beat(serving)
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning("heartbeat not written: state Redis unreachable", error=str(exc))
                failing = True
            except Exception:  # a bug must not stop the beat silently
                log.exception("heartbeat failed")
            # while Redis is away, try often: the first beat after it is back tells the sweep
            # which steps this node still holds
            self._stop_event.wait(min(self.interval, RETRY_WHILE_DOWN) if failing else self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        with contextlib.suppress(redis.RedisError, OSError):  # else the key expires by itself
            clear_beat(self.rt.redis, self.rt.settings, self.hostname)
