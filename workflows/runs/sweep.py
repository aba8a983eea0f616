"""The recovery sweep: find the steps nobody will run and dispatch them again.

A control worker runs :class:`~canvasflow.workflows.runs.sweep_thread.SweepThread` (one sweep
at a time across the fleet: a Redis lock), which calls :meth:`Sweeper.sweep`. Each sweep looks
at every active run (the SQL journal's non-terminal runs, plus the Redis set
``<prefix>:active`` kept by start and resume) and:

* rebuilds a run's Redis state from the journal when it is gone (:func:`recovery.rebuild`);
* closes in SQL a run Redis already ended (:func:`recovery.reconcile`);
* re-dispatches a **lost** step: one ``running`` or ``queued`` whose task id no live worker
  holds (see :mod:`canvasflow.workers.beats`) and, on a broker it can search (Redis), that is
  in no queue either. A step must look lost on two sweeps at least ``heartbeat_interval``
  apart, with every live node beaten in between (a node that held it would have said so),
  so one received a moment ago is never published twice. On Redis a queued step is searched
  for on both sweeps: one found waiting in a queue is a backlog, looked at again only after
  ``queued_grace``; on a broker it cannot search (RabbitMQ) a queued step waits
  ``queued_grace``. The claim makes a duplicate harmless;
* fails a lost step gone longer than its ``expires`` (RabbitMQ drops an expired message in the
  queue without a word) instead of sending it again, as a worker fails one it took too late;
* asks the rollback to go on (``rollback.progress``) for runs ``compensating``;
* puts back in the timer index the timers of steps still asleep (``timers.rearm``: a crash
  between a sleep's run state and the index, or an index lost alone, strands no run).

The suspicion hash (``<run>:suspect``) keeps, per step, when it was first seen lost (a
positive time) or waiting in a queue (the time, negated).

When it sweeps: :mod:`canvasflow.workflows.runs.sweep_thread`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.workers.beats import Beat, beats, held_tasks
from canvasflow.workflows.runs import recovery
from canvasflow.workflows.runs.recovery import SweepReport
from canvasflow.workflows.runs.suspects import (
    Candidate,
    Snapshot,
    candidates,
    queues_of,
    resend_chunk,
    snapshots,
)
from canvasflow.workflows.runtime import timers
from canvasflow.workflows.runtime.active import active_runs, note_suspicions
from canvasflow.workflows.runtime.advance import dispatch
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.control import rollback_progress
from canvasflow.workflows.runtime.failure import fail_revoked
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.messages import on_broker, searchable

log = structlog.get_logger("canvasflow.sweep")
FINAL_REDIS = ("succeeded", "failed", "cancelled", "compensated", "compensation_failed")


@dataclass
class _Suspects:
    """A run's suspected steps in this sweep, and what its suspicion hash held before."""

    run_id: str
    gen: int
    graph: StepGraph
    compensating: bool
    now: dict[str, Candidate]
    ripe: list[Candidate]
    seen: dict[str, float]


class Sweeper:
    """Remembers nothing between sweeps but what it keeps in Redis (any worker may sweep next).

    A sweep reads its runs ``BATCH`` at a time, each batch in one pipeline, and searches the
    broker's queues once for every suspect of every run (not once per run), so its cost grows
    with the runs in flight, not with their square."""

    BATCH = 200

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._asleep: list[tuple[str, int, list[str]]] = []  # this sweep's sleep steps (timers.rearm)
        self.searchable = searchable(rt)
        self.next_ripe: float | None = None  # when the earliest suspect left can ripen (epoch s)

    def _first_queued(self, f: _Suspects) -> list[Candidate]:
        if not self.searchable:
            return []
        return [c for sid, c in f.now.items() if not c.running and sid not in f.seen]

    def sweep(self, live: dict[str, Beat] | None = None) -> SweepReport:
        """One sweep; ``live``: the heartbeats when the caller has just read them."""
        report = SweepReport()
        live = beats(self.rt) if live is None else live
        held = held_tasks(live)
        oldest_beat = min((b.at for b in live.values()), default=0.0)
        journal_down = None
        runs = list(active_runs(self.rt).items())
        found: list[_Suspects] = []
        for i in range(0, len(runs), self.BATCH):
            batch = runs[i : i + self.BATCH]
            for (run_id, journal_gen), snap in zip(
                batch, snapshots(self.rt, [r for r, _ in batch]), strict=True
            ):
                try:
                    suspects = self._examine(run_id, journal_gen, snap, held, oldest_beat, report)
                except (redis.RedisError, OSError):
                    raise
                except SQLAlchemyError as exc:  # the journal is down: the next sweep tries again
                    journal_down = str(exc).splitlines()[0]
                except Exception:
                    log.exception("sweep of a run failed", run_id=run_id)
                else:
                    if suspects is not None:
                        found.append(suspects)
        self._settle(found, report)
        if self._asleep and (rearmed := timers.rearm(self.rt, self._asleep)):
            log.warning("sweep: timers put back in the index", timers=rearmed)
        self._asleep = []
        if journal_down:
            log.warning("sweep: journal unreachable; runs that need it wait", error=journal_down)
        if any(report.__dict__.values()):
            log.info(
                "sweep",
                redispatched=len(report.redispatched),
                rebuilt=report.rebuilt,
                reconciled=report.reconciled,
            )
        return report

    def _examine(
        self,
        run_id: str,
        journal_gen: int | None,
        snap: Snapshot,
        held: set[str],
        oldest_beat: float,
        report: SweepReport,
    ) -> _Suspects | None:
        """Rebuild or reconcile the run if it needs it; else its suspects (None: nothing to do)."""
        rt = self.rt
        status = snap.meta.get("status")
        if status is None or not snap.has_graph:
            if recovery.rebuild_if_lost(rt, run_id):
                report.rebuilt.append(run_id)
            return None
        if status in FINAL_REDIS:
            if recovery.reconcile(rt, run_id, status):
                report.reconciled.append(run_id)
            return None
        gen = int(snap.meta.get("gen") or 1)
        if status == "compensating" and recovery.reconcile(rt, run_id, status):
            report.reconciled.append(run_id)
        if status != "compensating" and (journal_gen or 0) > gen:
            if recovery.rebuild_if_stale(rt, run_id, gen):
                report.rebuilt.append(run_id)
            return None
        graph = rt.graph(run_id, gen)
        if status == "waiting":
            sleeping = [sid for sid, st in snap.states.items() if st == "waiting" and _sleeps(graph, sid)]
            if sleeping:
                self._asleep.append((run_id, gen, sleeping))
        now, seen = time.time(), snap.seen
        suspects = {c.unit: c for c in candidates(rt, run_id, graph, gen, snap) if not set(c.task_ids) & held}
        ripe = [
            c for sid, c in suspects.items() if sid in seen and self._ripe(c, seen[sid], now, oldest_beat)
        ]
        if not suspects and not seen and status != "compensating":
            return None
        return _Suspects(run_id, gen, graph, status == "compensating", suspects, ripe, seen)

    def _ripe(self, c: Candidate, seen: float, now: float, oldest_beat: float) -> bool:
        """Has ``c``, suspected since ``seen``, been lost long enough to be dispatched again?"""
        if seen >= 0 and oldest_beat <= seen:  # some live node has not beaten since: it may hold it
            return False
        return now >= self._ripens_at(c, seen)

    def _ripens_at(self, c: Candidate, seen: float) -> float:
        """When ``c``, marked ``seen`` in the suspicion hash, can be judged (epoch s): a backlog
        (negated time) is searched again after ``queued_grace``; a step seen lost after a
        heartbeat when running or searched for (Redis), else after ``queued_grace``."""
        s = self.rt.settings
        if seen < 0:
            return -seen + s.queued_grace
        return seen + (s.heartbeat_interval if c.running or self.searchable else s.queued_grace)

    def _settle(self, found: list[_Suspects], report: SweepReport) -> None:
        """One broker search for every ripe suspect; record suspicions; dispatch the lost steps."""
        rt = self.rt
        # searched: the ripe, and on Redis the queued steps suspected for the first time
        looked = {f.run_id: [*f.ripe, *self._first_queued(f)] for f in found}
        queues: set[str] = set()
        for f in found:
            queues |= queues_of(f.graph, looked[f.run_id])
        queued = on_broker(rt, {t for cs in looked.values() for c in cs for t in c.task_ids}, queues)
        now = time.time()
        p = rt.redis.pipeline(transaction=False)
        ripens: list[float] = []
        for f in found:
            stale = [sid for sid in f.seen if sid not in f.now]
            # new suspicions, and the lost or backlogged ones start their grace again; one seen
            # waiting in a queue is marked so (negated time); one marked so that a worker has
            # taken since (its claim says running) and no live node holds is suspected anew as
            # running: lost after a heartbeat, not after the backlog's grace
            fresh = {
                c.unit: -now if set(c.task_ids) & queued else now
                for c in f.now.values()
                if c.unit not in f.seen or c in looked[f.run_id] or (c.running and f.seen[c.unit] < 0)
            }
            if stale or fresh:  # only while the run is active: it may have finished since read
                note_suspicions(rt, f.run_id, fresh, stale, pipe=p)
            marks = {**f.seen, **fresh}
            ripens += [self._ripens_at(c, marks[sid]) for sid, c in f.now.items()]
        p.execute()
        self.next_ripe = min(ripens, default=None)  # when the earliest suspect left can ripen
        for f in found:
            try:
                # lost: not held, not queued, on two looks; a backlog gone from its queue is only
                # suspected now (the worker that took it may not have beaten since)
                lost = [c.unit for c in f.ripe if f.seen[c.unit] >= 0 and not set(c.task_ids) & queued]
                self._redispatch(f, sorted(lost), report)
            except (redis.RedisError, OSError):
                raise
            except Exception:
                log.exception("sweep of a run failed", run_id=f.run_id)

    def _redispatch(self, f: _Suspects, lost: list[str], report: SweepReport) -> None:
        rt = self.rt
        for unit in lost:
            node_id, _, chunk = unit.partition("#")
            if not chunk and _expired(f, node_id, time.time()):
                # gone past its ``expires`` (RabbitMQ drops an expired message in the queue, and
                # no worker says so): it fails as an expired message a worker took fails
                log.warning("a lost step is past its expiry: failing it", run_id=f.run_id, step_id=unit)
                ref = {"run": f.run_id, "step": node_id, "gen": f.gen}
                fail_revoked(ref, f.graph.steps[node_id].task, expired=True)
                continue
            log.warning("re-dispatching a lost step", run_id=f.run_id, step_id=unit)
            if chunk:
                resend_chunk(rt, f.run_id, f.gen, f.graph.steps[node_id], int(chunk))
            else:
                dispatch(rt, f.run_id, f.gen, f.graph, [unit])
            report.redispatched.append((f.run_id, unit))
        if f.compensating:
            rollback_progress(rt, f.run_id, f.gen)
            report.progressed.append(f.run_id)


def _expired(f: _Suspects, step_id: str, now: float) -> bool:
    """Has ``step_id``, lost since it was first suspected, been gone longer than its ``expires``
    (seconds)? Its message would have expired by now: a copy must not run it after all."""
    expires = f.graph.steps[step_id].options.get("expires")
    seen = f.seen.get(step_id, 0.0)
    return isinstance(expires, int | float) and not isinstance(expires, bool) and 0 < seen <= now - expires


def _sleeps(graph: StepGraph, step_id: str) -> bool:
    node = graph.steps.get(step_id)
    return node is not None and node.kind == "sleep"
