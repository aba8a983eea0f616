"""The recovery sweep: find the steps nobody will run and dispatch them again.

A control worker runs :class:`SweepThread` (one sweep at a time across the fleet: a Redis
lock). Each sweep looks at every active run (the SQL journal's non-terminal runs, plus the
Redis set ``<prefix>:active`` kept by start and resume) and:

* rebuilds a run's Redis state from the journal when it is gone (:func:`recovery.rebuild`);
* closes in SQL a run Redis already ended (:func:`recovery.reconcile`);
* re-dispatches a **lost** step: one ``running`` or ``queued`` whose task id no live worker
  holds (see :mod:`canvasflow.workers.beats`) and, on the Redis broker, that is in no
  queue either. A step must look lost on consecutive sweeps for a grace period
  (``2 x heartbeat_interval`` when running, ``queued_grace`` when queued), and every live
  node must have beaten since it first looked lost, so a step in a long backlog or one
  received a moment ago is never published twice. The claim makes a duplicate harmless;
* asks the rollback to go on (``rollback.progress``) for runs ``compensating``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.workers.beats import beats, held_tasks
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
from canvasflow.workflows.runtime.active import active_runs, note_suspicions
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.control import rollback_progress
from canvasflow.workflows.runtime.executor import dispatch
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.messages import on_broker

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

    def sweep(self) -> SweepReport:
        report = SweepReport()
        live = beats(self.rt)
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
        s, now, seen = rt.settings, time.time(), snap.seen
        suspects = {c.unit: c for c in candidates(rt, run_id, graph, gen, snap) if not set(c.task_ids) & held}
        ripe = [
            c
            for sid, c in suspects.items()
            if sid in seen
            and oldest_beat > seen[sid]
            and now - seen[sid] >= (2 * s.heartbeat_interval if c.running else s.queued_grace)
        ]
        if not suspects and not seen and status != "compensating":
            return None
        return _Suspects(run_id, gen, graph, status == "compensating", suspects, ripe, seen)

    def _settle(self, found: list[_Suspects], report: SweepReport) -> None:
        """One broker search for every ripe suspect; record suspicions; dispatch the lost steps."""
        rt = self.rt
        ripe = [c for f in found for c in f.ripe]
        queues: set[str] = set()
        for f in found:
            queues |= queues_of(f.graph, f.ripe)
        queued = on_broker(rt, {t for c in ripe for t in c.task_ids}, queues)
        now = time.time()
        p = rt.redis.pipeline(transaction=False)
        for f in found:
            stale = [sid for sid in f.seen if sid not in f.now]
            # new suspicions, and the lost or backlogged ones start their grace again
            fresh = {sid: now for sid, c in f.now.items() if sid not in f.seen or c in f.ripe}
            if stale or fresh:  # only while the run is active: it may have finished since read
                note_suspicions(rt, f.run_id, fresh, stale, pipe=p)
        p.execute()
        for f in found:
            try:
                self._redispatch(f, sorted(c.unit for c in f.ripe if not set(c.task_ids) & queued), report)
            except (redis.RedisError, OSError):
                raise
            except Exception:
                log.exception("sweep of a run failed", run_id=f.run_id)

    def _redispatch(self, f: _Suspects, lost: list[str], report: SweepReport) -> None:
        rt = self.rt
        for unit in lost:
            log.warning("re-dispatching a lost step", run_id=f.run_id, step_id=unit)
            node_id, _, chunk = unit.partition("#")
            if chunk:
                resend_chunk(rt, f.run_id, f.gen, f.graph.steps[node_id], int(chunk))
            else:
                dispatch(rt, f.run_id, f.gen, f.graph, [unit])
            report.redispatched.append((f.run_id, unit))
        if f.compensating:
            rollback_progress(rt, f.run_id, f.gen)
            report.progressed.append(f.run_id)


class SweepThread(threading.Thread):
    """Sweeps every ``sweep_interval`` seconds in a worker's main process until :meth:`stop`."""

    def __init__(self, rt: Runtime, hostname: str) -> None:
        super().__init__(name="canvasflow-sweep", daemon=True)
        self.rt = rt
        self.hostname = hostname
        self._stop_event = threading.Event()

    def run(self) -> None:
        interval = self.rt.settings.sweep_interval
        sweeper = Sweeper(self.rt)
        prefix = self.rt.settings.key_prefix
        turn, busy = f"{prefix}:sweep:turn", f"{prefix}:sweep:busy"
        while not self._stop_event.wait(interval):
            try:
                # one sweep per interval across the fleet (turn), never two at once (busy)
                r = self.rt.redis
                if not r.set(turn, self.hostname, nx=True, px=max(int(interval * 900), 100)):
                    continue
                # (a sweeper killed mid-sweep holds `busy` for two intervals at most)
                if not r.set(busy, self.hostname, nx=True, px=max(int(interval * 2000), 2_000)):
                    continue
                try:
                    sweeper.sweep()
                finally:
                    if r.get(busy) == self.hostname.encode():
                        r.delete(busy)
            except (redis.RedisError, OSError) as exc:
                log.warning("sweep skipped: state Redis unreachable", error=str(exc))
            except Exception:
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop_event.set()
