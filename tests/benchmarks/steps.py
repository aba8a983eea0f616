"""Benchmark steps and workflows (imported by the bench client and by the bench worker).

Every scenario ends with a *finish signal*: a step writes to Redis (``RPUSH bench:done:<token>``)
and the bench BLPOPs it, so both sides are timed the same way and neither is slowed by
``AsyncResult.get()`` polling. The same step code runs under canvasflow and under raw Celery:

* ``bench.noop``    chain link: returns None
* ``bench.finish``  last chain link: pushes the finish signal
* ``bench.count``   group member: INCR a counter; the member that brings it to ``n`` pushes the signal
* ``bench.items``   map_reduce ``items_from``: ``list(range(n))``
* ``bench.double``  mapper: ``2 * x``
* ``bench.reduce``  reducer: sums the mapped values and pushes the sum as the signal
* ``bench.saga_step`` / ``bench.saga_undo`` / ``bench.saga_fail``  the saga scenario: the failing
  step stores when it failed; the compensation of the first step (the last to run) pushes
  when it finished, so the bench times failure -> ninth compensation done

All run on capability ``bench`` (queue ``cap.bench``). The routed chain's links
(``bench.rnoop_*``/``bench.rfinish_*``) run on capability ``benchr``, whose two engines are
live on workers of their own: ``e1`` (priority 10) on the worker that serves ``cap.bench``,
``e2`` on a second one (docs/BENCHMARKS.md). ``bench.routed_burst`` (200 load_balanced steps
after one) and ``bench.routed_perf`` (a performance_based chain; ``e1`` sleeps twice as long
as ``e2``) say where their steps ran, from the engine that delivered each.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import chain, chord, group
from celery.signals import worker_process_init

from canvasflow.compensation import compensates
from canvasflow.workers.engines import Engine, register_engine
from canvasflow.workers.step import step
from canvasflow.workflows import Workflow, map_reduce
from canvasflow.workflows.runtime.execution import context

PG_QUEUE = "cap.bench.pg"  # served by the bench's second worker, journaling to PostgreSQL
TEL_QUEUE = "cap.bench.tel"  # served by a worker with metrics and the event stream on
_clients: dict[int, redis.Redis] = {}


def signal_redis() -> redis.Redis:
    """This process's client for the finish signals (the runtime's state Redis)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        from canvasflow.config.settings import get_settings

        client = _clients[pid] = redis.Redis.from_url(get_settings().redis_state_url)
    return client


def done_key(token: str) -> str:
    return f"bench:done:{token}"


def count_key(token: str) -> str:
    return f"bench:cnt:{token}"


def push_done(token: str, value: Any = 1) -> None:
    p = signal_redis().pipeline(transaction=False)
    p.rpush(done_key(token), str(value))
    p.expire(done_key(token), 3600)
    p.execute()


# -- steps ------------------------------------------------------------------------------
@step(name="bench.noop", capability="bench")
def noop(*_: Any, **__: Any) -> None:
    return None


@step(name="bench.finish", capability="bench")
def finish(*_: Any, token: str) -> None:
    push_done(token)


@step(name="bench.count", capability="bench")
def count(token: str, n: int) -> None:
    r = signal_redis()
    if r.incr(count_key(token)) == n:
        r.expire(count_key(token), 3600)
        push_done(token)


@step(name="bench.tally", capability="bench")
def tally(*_: Any, token: str, n: int) -> None:
    """The last step of each of ``n`` concurrent runs: the ``n``-th to finish pushes the signal."""
    r = signal_redis()
    if r.incr(count_key(token)) == n:
        r.expire(count_key(token), 3600)
        push_done(token)


@step(name="bench.items", capability="bench")
def items(n: int) -> list[int]:
    return list(range(n))


@step(name="bench.double", capability="bench")
def double(x: int) -> int:
    return 2 * x


@step(name="bench.reduce", capability="bench")
def reduce(values: list[int], token: str) -> int:
    total = sum(values)
    push_done(token, total)
    return total


@step(name="bench.double_chunk", capability="bench")
def double_chunk(xs: list[int]) -> list[int]:
    """Raw Celery's hand-chunked map: one task doubles a whole chunk (as canvasflow's chunks do)."""
    return [2 * x for x in xs]


@step(name="bench.reduce_chunks", capability="bench")
def reduce_chunks(parts: list[list[int]], token: str) -> int:
    total = sum(v for part in parts for v in part)
    push_done(token, total)
    return total


def failed_key(token: str) -> str:
    return f"bench:failed:{token}"


@step(name="bench.saga_step", capability="bench")
def saga_step(*_: Any, index: int, token: str) -> int:
    return index


@compensates(saga_step, name="bench.saga_undo", retries=0)
def saga_undo(result: int, *_: Any, index: int, token: str) -> None:
    if index == 0:
        push_done(token, repr(time.time()))


@step(name="bench.saga_fail", capability="bench")
def saga_fail(*_: Any, token: str) -> None:
    signal_redis().set(failed_key(token), repr(time.time()), ex=3600)
    raise RuntimeError("the last step of the saga fails on purpose")


ROUTED_QUEUES = "cap.benchr.e1,cap.benchr.e2"
ENGINE_QUEUES = {"e1": "cap.benchr.e1", "e2": "cap.benchr.e2"}
PERF_SLEEP = {"e1": 0.06, "e2": 0.03}  # e2 twice as fast (long enough to stand out of the noise)
register_engine(Engine("e1", "benchr", priority=10))
register_engine(Engine("e2", "benchr", priority=1))


@step(name="bench.rnoop_ba", capability="benchr", route="best_available")
def rnoop_ba(*_: Any, **__: Any) -> None:
    return None


@step(name="bench.rfinish_ba", capability="benchr", route="best_available")
def rfinish_ba(*_: Any, token: str) -> None:
    push_done(token)


@step(name="bench.rnoop_lb", capability="benchr", route="load_balanced")
def rnoop_lb(*_: Any, **__: Any) -> None:
    return None


@step(name="bench.rfinish_lb", capability="benchr", route="load_balanced")
def rfinish_lb(*_: Any, token: str) -> None:
    push_done(token)


@step(name="bench.rwhere_lb", capability="benchr", route="load_balanced")
def rwhere_lb(*_: Any, **__: Any) -> str | None:
    return context().engine  # the engine whose queue delivered it: where it really ran


@step(name="bench.rtally_lb", capability="benchr", route="load_balanced")
def rtally_lb(engines: list[Any], token: str) -> None:
    push_done(token, len(engines))


@step(name="bench.rperf", capability="benchr", route="performance_based")
def rperf(*_: Any, token: str | None = None) -> str | None:
    engine = context().engine
    time.sleep(PERF_SLEEP.get(str(engine), 0.0))
    if token is not None:
        push_done(token)
    return engine


def _routed_burst(n: int, token: str) -> Any:
    return chain(rnoop_lb.s(), group(rwhere_lb.s() for _ in range(n)), rtally_lb.s(token=token))


def _routed_perf(n: int, token: str) -> Any:
    return chain(*(rperf.s() for _ in range(n - 1)), rperf.s(token=token))


def _routed_chain(n: int, token: str, strategy: str) -> Any:
    link, last = (rnoop_ba, rfinish_ba) if strategy == "best_available" else (rnoop_lb, rfinish_lb)
    return chain(*(link.s() for _ in range(n - 1)), last.s(token=token))


# -- the same shapes as canvas (raw Celery runs these directly) ---------------------------
def _on(links: list[Any], queue: str | None) -> list[Any]:
    return [s.set(queue=queue) for s in links] if queue else links


def chain_canvas(n: int, token: str, queue: str | None = None) -> Any:
    return chain(*_on([*(noop.s() for _ in range(n - 1)), finish.s(token=token)], queue))


def group_canvas(n: int, token: str, queue: str | None = None) -> Any:
    members = (count.s(token, n) for _ in range(n))
    return group(m.set(queue=queue) for m in members) if queue else group(members)


def tally_chain(length: int, token: str, runs: int, queue: str | None = None, seq: int = 0) -> Any:
    """One of ``runs`` concurrent chains of ``length`` (throughput.py): no-ops, then a tally;
    ``seq`` (the run's number, an argument of the first no-op) makes each run's canvas its own."""
    links = [*(noop.s() for _ in range(length - 1)), tally.s(token=token, n=runs)]
    if seq and length > 1:
        links[0] = noop.s(seq)
    return chain(*_on(links, queue))


def tally_chord(width: int, token: str, runs: int) -> Any:
    """One of ``runs`` concurrent chords: ``width`` no-op members, then a tally as the body."""
    return chord([noop.s() for _ in range(width)], tally.s(token=token, n=runs))


# -- canvasflow workflows ---------------------------------------------------------------
def _chain(n: int, token: str) -> Any:
    return chain_canvas(n, token)


def _chain_pg(n: int, token: str) -> Any:
    """The chain routed to the queue of the worker whose journal is PostgreSQL."""
    return chain_canvas(n, token, queue=PG_QUEUE)


def _group(n: int, token: str) -> Any:
    return group_canvas(n, token)


def _chain_tel(n: int, token: str) -> Any:
    """The chain on the queue of the worker with telemetry (metrics, events) on."""
    return chain_canvas(n, token, queue=TEL_QUEUE)


def _group_tel(n: int, token: str) -> Any:
    return group_canvas(n, token, queue=TEL_QUEUE)


def _map_reduce(n: int, token: str, chunk_size: int = 100) -> Any:
    return map_reduce(double.s(), reduce.s(token=token), items_from=items.s(n), chunk_size=chunk_size)


def _saga(n: int, token: str) -> Any:
    return chain(*(saga_step.s(index=i, token=token) for i in range(n - 1)), saga_fail.s(token=token))


CHAIN = Workflow("bench.chain", "1", build=_chain)
TALLY_CHAIN = Workflow("bench.tally_chain", "1", build=tally_chain)
TALLY_CHORD = Workflow("bench.tally_chord", "1", build=tally_chord)
MEM_QUEUE = "cap.bench.mem"  # memory.py: served only once the runs in flight were measured


def _mem_chain(length: int, token: str, runs: int) -> Any:
    return tally_chain(length, token, runs, queue=MEM_QUEUE)


MEM_CHAIN = Workflow("bench.mem_chain", "1", build=_mem_chain)
SAGA = Workflow("bench.saga", "1", build=_saga)
CHAIN_PG = Workflow("bench.chain_pg", "1", build=_chain_pg)
GROUP = Workflow("bench.group", "1", build=_group)
MAP_REDUCE = Workflow("bench.map_reduce", "1", build=_map_reduce)
ROUTED_CHAIN = Workflow("bench.routed_chain", "1", build=_routed_chain)
ROUTED_BURST = Workflow("bench.routed_burst", "1", build=_routed_burst)
ROUTED_PERF = Workflow("bench.routed_perf", "1", build=_routed_perf)
CHAIN_TEL = Workflow("bench.chain_tel", "1", build=_chain_tel)
GROUP_TEL = Workflow("bench.group_tel", "1", build=_group_tel)


# -- optional profiling of the worker side (the bench's --profile pass) --------------------
@worker_process_init.connect(weak=False)
def _maybe_profile(**_: Any) -> None:
    from tests.benchmarks import timers

    if timers.enabled():
        timers.install()
