"""When the recovery sweep runs: a thread in a control worker's main process.

:class:`SweepThread` sweeps (:class:`~canvasflow.workflows.runs.sweep.Sweeper`) every
``sweep_interval``, sooner when a suspect can ripen before then, at once when a worker node dies
(its heartbeat expires), and at once when the state Redis answers again after an outage (once
the workers' heartbeats are back), so a step a kill or an outage interrupted runs again seconds
after it is noticed. One sweep per interval across the fleet, never two at once (Redis keys).
"""

from __future__ import annotations

import threading
import time

import redis
import structlog

from canvasflow.workers.beats import RETRY_WHILE_DOWN, Beat, beats
from canvasflow.workflows.runs.sweep import Sweeper
from canvasflow.workflows.runtime.context import Runtime

log = structlog.get_logger("canvasflow.sweep")


class SweepThread(threading.Thread):
    """Sweeps in a worker's main process until :meth:`stop`: every ``sweep_interval`` seconds,
    sooner when a suspect can ripen before then, and at once when the state Redis answers again
    or a worker node's heartbeat expires (it looks every heartbeat interval: one read of the
    heartbeats)."""

    def __init__(self, rt: Runtime, hostname: str) -> None:
        super().__init__(name="canvasflow-sweep", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self._stop_event = threading.Event()

    def run(self) -> None:
        s = self.rt.settings
        interval = s.sweep_interval
        tick = max(min(interval, s.heartbeat_interval), RETRY_WHILE_DOWN)  # how often it looks
        sweeper = Sweeper(self.rt)
        wait, down, due, nodes = 0.0, False, time.time() + interval, set[str]()
        while not self._stop_event.wait(wait):
            try:
                now_up = down
                if down:
                    self.rt.redis.ping()
                    log.info("state Redis answers again: sweeping now")
                    # the heartbeats come back within their retry (workers/heartbeat.py): a node
                    # that holds a step says so before this sweep judges it
                    self._stop_event.wait(2 * RETRY_WHILE_DOWN)
                    down = False
                live = beats(self.rt)
                died, nodes = nodes - set(live), set(live)
                if now_up or died or time.time() >= due:
                    if died:
                        log.info("worker nodes gone: sweeping now", hostnames=sorted(died))
                    self._sweep_if_my_turn(sweeper, live, interval, at_once=now_up or bool(died))
                    due = time.time() + interval
                    if sweeper.next_ripe is not None:  # come back when the first suspect can ripen
                        due = min(due, sweeper.next_ripe + 0.2)
                wait = max(min(tick, due - time.time()), RETRY_WHILE_DOWN)
            except (redis.RedisError, OSError) as exc:
                if not down:
                    log.warning("sweep skipped: state Redis unreachable", error=str(exc))
                down, wait = True, RETRY_WHILE_DOWN
            except Exception:
                log.exception("sweep failed")
                wait = interval

    def _sweep_if_my_turn(
        self, sweeper: Sweeper, live: dict[str, Beat], interval: float, *, at_once: bool
    ) -> None:
        """One sweep per interval across the fleet (``turn``), never two at once (``busy``). A
        node may sweep again early when the turn is its own, and at once when Redis is just back
        (a turn taken before the outage would hold every sweeper back) or a worker node died."""
        r = self.rt.redis
        prefix = self.rt.settings.key_prefix
        turn, busy = f"{prefix}:sweep:turn", f"{prefix}:sweep:busy"
        px = max(int(interval * 900), 100)
        me = self.hostname.encode()
        if at_once:
            r.set(turn, self.hostname, px=px)
        elif not r.set(turn, self.hostname, nx=True, px=px):
            if r.get(turn) != me:
                return
            r.pexpire(turn, px)  # its own turn, taken again early
        # (a sweeper killed mid-sweep holds `busy` for two intervals at most)
        if not r.set(busy, self.hostname, nx=True, px=max(int(interval * 2000), 2_000)):
            return
        try:
            sweeper.sweep(live)
        finally:
            if r.get(busy) == me:
                r.delete(busy)

    def stop(self) -> None:
        self._stop_event.set()
