"""The timer service: wake the sleep steps that are due (durable timers, runtime/timers.py).

A control worker runs :class:`TimerThread` in its main process, beside the recovery sweep
(and for the same reasons: no extra process to deploy, and it keeps working when messages
are lost). Every ``timer_interval`` seconds one of the fleet's timer threads (a Redis lock
decides which, renewed at each look; another takes over within 2 s when its holder dies)
reads the due members of the timer index, earliest first, ``timer_batch`` at a time, and:

1. :func:`timers.take` wakes the step once (the current generation of an active run, the step
   still waiting); a cancelled, failed or timed-out run's timer changes nothing;
2. the executor completes the step with its input, unchanged, and dispatches its successors;
3. the member leaves the index.

The runs whose last sleeping step woke move from ``waiting`` to ``running`` in the journal in one
transaction per look (not one each), after 2.

A thread killed between 1 and 2 leaves the step ``running`` with no worker holding it: the
sweep dispatches it again, and a sleep already due completes at once (special.py). One
killed between 2 and 3 leaves a member whose wake-up (1) refuses it; it is then removed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import redis
import structlog

from canvasflow.workflows.runtime import publishing, timers
from canvasflow.workflows.runtime.advance import complete_many
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.wire import encode_result

log = structlog.get_logger("canvasflow.timers")


def fire_due(rt: Runtime, hostname: str | None = None) -> int:
    """Wake every sleep step due now (``timer_batch`` at a time); how many were woken. The steps'
    journal names ``hostname`` as the worker that woke them."""
    woken = 0
    while True:
        members = timers.due(rt, rt.settings.timer_batch)
        woken += _fire(rt, members, hostname)
        timers.drop(rt, members)
        if len(members) < rt.settings.timer_batch:
            return woken


def _fire(rt: Runtime, members: list[str], hostname: str | None) -> int:
    """Take each due step (once), complete them with their inputs, then move the runs that no
    longer wait back to ``running`` in one journal transaction (after: a slow database does not
    hold the wake-ups back; a run whose next step already finished it is left as it is)."""
    began = time.perf_counter()
    due = []
    for raw in members:
        if (found := timers.parse(raw)) is None:
            log.warning("not a timer; removed from the index", member=raw[:200])
            continue
        run_id, step_id, gen = found
        try:
            node = rt.graph(run_id, gen).steps[step_id]
        except KeyError:  # the run is gone (pruned), or the member names no step of it
            continue
        due.append((run_id, gen, node))
    taken = [(*d, t) for d, t in zip(due, timers.take(rt, due), strict=True) if t is not None]
    took = time.perf_counter() - began
    at = datetime.now(UTC).isoformat()
    items = [
        (
            run_id,
            node.id,
            gen,
            t.value,
            encode_result(node.id, t.value),
            {**t.info, "finished_at": at, "gen": gen, "worker": hostname},
        )
        for run_id, gen, node, t in taken
    ]
    # a step taken and never completed (this process died, Redis went away) is running, held by
    # no worker: the sweep dispatches it again, and a sleep already due completes at once
    with publishing.batch(rt.app, rt.settings.publish_batch_size, len(taken)):  # successors: one flush
        complete_many(rt, items)
    completed = time.perf_counter() - began
    rt.store.woken(run_id for run_id, _, _, t in taken if t.resumed)
    if taken:
        log.info(
            "sleep steps woken",
            woken=len(taken),
            take_ms=round(took * 1000),
            complete_ms=round((completed - took) * 1000),
            journal_ms=round((time.perf_counter() - began - completed) * 1000),
        )
    return len(taken)


class TimerThread(threading.Thread):
    """Looks for due timers every ``timer_interval`` seconds (sooner when the next one falls due
    sooner) until :meth:`stop`."""

    def __init__(self, rt: Runtime, hostname: str) -> None:
        super().__init__(name="canvasflow-timers", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = self.rt.settings.timer_interval
        lock = f"{self.rt.settings.key_prefix}:timers:lock"
        me = self.hostname.encode()
        hold = max(int(interval * 10_000), 2_000)  # ms: a holder that died is replaced this soon
        pause = interval
        while not self._stop_event.wait(pause):
            pause = interval
            try:
                r = self.rt.redis
                # one timer thread of the fleet fires (so a wake-up is not raced for); the holder
                # keeps the lock from look to look, and another takes it when the holder is gone
                if not r.set(lock, me, nx=True, px=hold) and r.get(lock) != me:
                    continue
                r.pexpire(lock, hold)
                fire_due(self.rt, self.hostname)
                pause = min(interval, max(timers.next_due(self.rt) - timers.now(self.rt.settings), 0.005))
            except (redis.RedisError, OSError) as exc:
                log.warning("timers not looked at: state Redis unreachable", error=str(exc))
            except Exception:
                log.exception("timer look failed")

    def stop(self) -> None:
        self._stop_event.set()
        r = self.rt.redis
        try:
            if r.get(f"{self.rt.settings.key_prefix}:timers:lock") == self.hostname.encode():
                r.delete(f"{self.rt.settings.key_prefix}:timers:lock")
        except (redis.RedisError, OSError):
            pass
