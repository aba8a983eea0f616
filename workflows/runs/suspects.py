"""What a sweep reads of the runs in flight, and which of their steps may be lost.

:func:`snapshots` reads many runs' Redis state in one round trip; :func:`candidates` names the
steps (and map chunks) that should be on a broker or in a worker right now, with the task ids
that would run them; :func:`queues_of` says where their messages may wait. The sweep
(:mod:`canvasflow.workflows.runs.sweep`) decides which of them are lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from canvasflow.workers.engines import registry as engines
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, resolve
from canvasflow.workflows.runtime.sending import send_step
from canvasflow.workflows.runtime.state import as_text
from canvasflow.workflows.runtime.wire import CHUNK_TASK, held_by, task_id_for


@dataclass(frozen=True)
class Candidate:
    unit: str  # what is suspected: a step, or one chunk of a map step (``<step>#<i>``)
    step_id: str  # the graph node to dispatch again
    task_ids: tuple[str, ...]  # the messages that would run it (none yet for a map not fanned out)
    running: bool
    queue: str | None = None


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
        # while it runs; its retry (and any message of its own) carries the step's own id
        own = task_id_for(run_id, sid, gen)
        tids = tuple(dict.fromkeys((held_by(snap.info(sid)) or own, own)))
        out.append(Candidate(sid, sid, tids, st == "running", node.options.get("queue")))
    return out


def queues_of(graph: StepGraph, ripe: list[Candidate]) -> set[str]:
    """Where the suspects' messages may wait: their queue, and for a step routed to an engine when
    it became ready, every engine queue of its capability (the router's choice is not in the graph)."""
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


def resend_chunk(rt: Runtime, run_id: str, gen: int, node: StepNode, index: int) -> None:
    """Publish one chunk of a map step again (its siblings are left alone)."""
    chunk = _chunks(rt, run_id, node)[index]
    send_step(rt, run_id, gen, node, [node.spec["mapper"], chunk], {}, chunk=index, task=CHUNK_TASK)
