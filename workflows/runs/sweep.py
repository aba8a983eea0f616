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

import json
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from canvasflow.workers.beats import beats, held_tasks
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.executor import dispatch
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, resolve
from canvasflow.workflows.runtime.messages import on_broker
from canvasflow.workflows.runtime.sending import send_step
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.runtime.wire import task_id_for

log = structlog.get_logger("canvasflow.sweep")
ACTIVE_SQL = ("pending", "running", "waiting", "compensating")
FINAL_REDIS = ("succeeded", "failed", "cancelled", "compensated", "compensation_failed")


def active_key(rt: Runtime) -> str:
    return f"{rt.settings.key_prefix}:active"


def mark_active(rt: Runtime, run_id: str) -> None:
    """Index a run the sweep must watch (start and resume call this; the sweep prunes it)."""
    rt.redis.sadd(active_key(rt), run_id)


@dataclass
class SweepReport:
    redispatched: list[tuple[str, str]] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)
    progressed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    unit: str  # what is suspected: a step, or one chunk of a map step (``<step>#<i>``)
    step_id: str  # the graph node to dispatch again
    task_ids: tuple[str, ...]  # the messages that would run it (none yet for a map not fanned out)
    running: bool
    queue: str | None = None


def active_runs(rt: Runtime) -> dict[str, int | None]:
    """Non-terminal runs, the journal's (when it answers) and the Redis index's, with the
    generation the journal holds (None when only Redis knows the run)."""
    runs: dict[str, int | None] = {as_text(x): None for x in rt.redis.smembers(active_key(rt))}
    try:
        runs.update(rt.store.runs_with_status(ACTIVE_SQL))
    except Exception as exc:  # the journal is down: Redis still knows the runs it runs
        log.warning("sweep: journal unreachable, watching the Redis index only", error=str(exc))
    return dict(sorted(runs.items()))


def has_state(rt: Runtime, run_id: str) -> bool:
    return bool(rt.redis.exists(rt.state.key(run_id, "graph")))


@dataclass
class Snapshot:
    """What one sweep reads of a run's Redis state, for many runs in one pipeline."""

    meta: dict[str, str]
    has_graph: bool
    states: dict[str, str]
    info_raw: dict[str, Any]  # step -> its claim's JSON, parsed only for the steps looked at
    deps: dict[str, int]
    fanned: set[str]
    seen: dict[str, float]  # suspicions of earlier sweeps (``<run>:suspect``)

    def info(self, step_id: str) -> dict[str, Any]:
        raw = self.info_raw.get(step_id)
        return json.loads(raw) if raw else {}


def snapshots(rt: Runtime, run_ids: list[str]) -> list[Snapshot]:
    """Each run's meta, step states, claims, joins and suspicions: one round trip for them all."""
    p = rt.redis.pipeline(transaction=False)
    for run_id in run_ids:
        key = partial(rt.state.key, run_id)
        p.hgetall(key("meta"))
        p.exists(key("graph"))
        p.hgetall(key("st"))
        p.hgetall(key("info"))
        p.hgetall(key("deps"))
        p.hkeys(key("chunksleft"))
        p.hgetall(key("suspect"))
    replies = p.execute()
    out = []
    for i in range(len(run_ids)):
        meta, graph, st, info, deps, fanned, seen = replies[7 * i : 7 * i + 7]
        out.append(
            Snapshot(
                meta={as_text(k): as_text(v) for k, v in meta.items()},
                has_graph=bool(graph),
                states={as_text(k): as_text(v) for k, v in st.items()},
                info_raw={as_text(k): v for k, v in info.items()},
                deps={as_text(k): int(v) for k, v in deps.items()},
                fanned={as_text(k) for k in fanned},
                seen={as_text(k): float(v) for k, v in seen.items()},
            )
        )
    return out


def candidates(rt: Runtime, run_id: str, graph: StepGraph, gen: int, snap: Snapshot) -> list[Candidate]:
    """Steps that should be on a broker or in a worker right now, with their task ids."""
    states = snap.states
    children = None
    out = []
    for sid, node in graph.steps.items():
        st = states.get(sid)
        if node.kind == "signal" or st in ("succeeded", "failed", "partial", "skipped", "waiting", "revoked"):
            continue
        if st is None and snap.deps.get(sid, 0) > 0:
            continue  # not ready yet
        if node.kind == "map":
            if sid not in snap.fanned:
                out.append(Candidate(sid, sid, (), False, node.options.get("queue")))  # never fanned out
                continue
            done = set(rt.state.chunk_results(run_id, sid))
            n = _chunk_count(rt, run_id, node)
            queue = node.options.get("queue")
            out += [
                Candidate(
                    f"{sid}#{i}",
                    sid,
                    (task_id_for(run_id, sid, gen, i),),
                    states.get(f"{sid}#{i}") == "running",
                    queue,
                )
                for i in range(n)
                if i not in done
            ]
            continue
        if node.kind == "workflow" and st == "running":
            if children is None:
                children = {c.parent_step for c in rt.store.children(run_id)}
            if sid in children:
                continue  # its child run completes it
        # a fused step's claim names the delivery it runs in (fusion.py): that is the id held
        tid = snap.info(sid).get("task_id") or task_id_for(run_id, sid, gen)
        out.append(Candidate(sid, sid, (tid,), st == "running", node.options.get("queue")))
    return out


def _queues(graph: StepGraph, ripe: list[Candidate]) -> set[str]:
    """Where the suspects' messages may wait: their queue, and for a step routed to an engine when
    it became ready, every engine queue of its capability (the router's choice is not in the graph)."""
    from canvasflow.workers.engines import registry as engines

    out = {c.queue for c in ripe if c.queue}
    for c in ripe:
        routing = graph.steps[c.step_id].options.get("routing")
        if routing:
            out.update(e.queue for e in engines.of(routing["capability"]))
    return out


def _chunks(rt: Runtime, run_id: str, node: StepNode) -> list[list[Any]]:
    """A map step's chunks, cut from its input as the fan-out cut them."""
    items = list(resolve(node.args[0], rt.state.results(run_id, sorted(node.reads())))) if node.args else []
    size = max(int(node.spec.get("chunk_size") or 1), 1)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _chunk_count(rt: Runtime, run_id: str, node: StepNode) -> int:
    return len(_chunks(rt, run_id, node))


def _resend_chunk(rt: Runtime, run_id: str, gen: int, node: StepNode, index: int) -> None:
    """Publish one chunk of a map step again (its siblings are left alone)."""
    from canvasflow.workflows.runtime.wire import CHUNK_TASK

    chunk = _chunks(rt, run_id, node)[index]
    send_step(rt, run_id, gen, node, [node.spec["mapper"], chunk], {}, chunk=index, task=CHUNK_TASK)


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
        from canvasflow.workflows.runs import recovery

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
            queues |= _queues(f.graph, f.ripe)
        queued = on_broker(rt, {t for c in ripe for t in c.task_ids}, queues)
        now = time.time()
        p = rt.redis.pipeline(transaction=False)
        for f in found:
            key = rt.state.key(f.run_id, "suspect")
            if stale := [sid for sid in f.seen if sid not in f.now]:
                p.hdel(key, *stale)
            fresh = {sid: now for sid, c in f.now.items() if sid not in f.seen or c in f.ripe}
            if fresh:  # new suspicions, and the lost or backlogged ones start their grace again
                p.hset(key, mapping=cast(dict[Any, Any], fresh))
            if f.now:
                p.expire(key, rt.settings.result_expires)
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
                _resend_chunk(rt, f.run_id, f.gen, f.graph.steps[node_id], int(chunk))
            else:
                dispatch(rt, f.run_id, f.gen, f.graph, [unit])
            report.redispatched.append((f.run_id, unit))
        if f.compensating:
            from canvasflow.workflows.runtime.control import rollback_progress

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
