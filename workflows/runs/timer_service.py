"""The timer service: wake the sleep steps that are due (durable timers, runtime/timers.py).

A control worker runs :class:`TimerThread` in its main process, beside the recovery sweep
(and for the same reasons: no extra process to deploy, and it keeps working when messages
are lost). Every ``timer_interval`` seconds one of the fleet's timer threads (a Redis lock
decides which; another takes over within a look when it dies) reads the due members of the
timer index, earliest first, ``timer_batch`` at a time, and for each:

1. :func:`timers.take` wakes the step once (the current generation of an active run, the step
   still waiting); a cancelled, failed or timed-out run's timer changes nothing;
2. the executor completes the step with its input, unchanged, and dispatches its successors;
3. the member leaves the index.

A thread killed between 1 and 2 leaves the step ``running`` with no worker holding it: the
sweep dispatches it again, and a sleep already due completes at once (special.py). One
killed between 2 and 3 leaves a member whose wake-up (1) refuses it; it is then removed.
"""

from __future__ import annotations

import threading

import redis
import structlog

from canvasflow.workflows.runtime import timers
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.executor import complete
from canvasflow.workflows.runtime.wire import encode_result

log = structlog.get_logger("canvasflow.timers")


def fire_due(rt: Runtime) -> int:
    """Wake every sleep step due now (``timer_batch`` at a time); how many were woken."""
    woken = 0
    while True:
        members = timers.due(rt, rt.settings.timer_batch)
        for raw in members:
            woken += _fire(rt, raw)
        timers.drop(rt, members)
        if len(members) < rt.settings.timer_batch:
            return woken


def _fire(rt: Runtime, raw: str) -> int:
    found = timers.parse(raw)
    if found is None:
        log.warning("not a timer; removed from the index", member=raw[:200])
        return 0
    run_id, step_id, gen = found
    try:
        if not timers.take(rt, run_id, step_id, gen):
            return 0
        node = rt.graph(run_id, gen).steps[step_id]
        value = timers.passed_value(rt, run_id, node)
        complete(rt, run_id, step_id, gen, value, encode_result(step_id, value), None)
    except (redis.RedisError, OSError):
        raise  # the member stays in the index; the next look tries again
    except Exception:
        log.exception("waking a sleep step failed; the sweep dispatches it again", run_id=run_id, step_id=step_id)
        return 0
    log.info("sleep step woken", run_id=run_id, step_id=step_id)
    return 1


class TimerThread(threading.Thread):
    """Looks for due timers every ``timer_interval`` seconds until :meth:`stop`."""

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
        while not self._stop_event.wait(interval):
            try:
                r = self.rt.redis
                # one timer thread of the fleet fires (so a wake-up is not raced for); the holder
                # keeps the lock from look to look, and another takes it when the holder is gone
                if not r.set(lock, me, nx=True, px=hold) and r.get(lock) != me:
                    continue
                r.pexpire(lock, hold)
                fire_due(self.rt)
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
