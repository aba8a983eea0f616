"""The client for asyncio code: coroutines that do not block the event loop.

    from canvasflow import aio

    run = await aio.start("checkout", {"order": {...}}, key="order-42")
    record = await aio.wait(run.id, timeout=30)      # or: await run.wait(30)
    (await aio.get_run(run.id)).status

Each call is the blocking client's (``canvasflow.workflows.client``) run in a bounded thread
pool of this process: ``CANVASFLOW_AIO_THREADS`` threads, by default the journal's connection
pool size plus its overflow, so that no thread waits for a database connection. We chose this
over redis-py's asyncio client and SQLAlchemy's asyncio engine: a start validates, compiles,
journals in one SQL transaction, runs Redis scripts and publishes to the broker, and doing
that twice (blocking for workers and the CLI, async here) would give two runtimes to keep
equal. The event loop only awaits; ``wait`` polls the journal from the pool between
``asyncio.sleep`` pauses (50 ms, growing to 500 ms), so a long wait holds no thread.
tests/integration/test_aio.py measures the loop's lag under 200 concurrent starts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from canvasflow.config.settings import get_settings
from canvasflow.workflows import client
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import TERMINAL, RunRecord

T = TypeVar("T")
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.5

_pools: dict[int, ThreadPoolExecutor] = {}  # one per process (a forked child makes its own)


def threads() -> int:
    """How many threads the client's calls share in this process."""
    s = get_settings()
    return s.aio_threads or s.database_pool_size + s.database_max_overflow


def _pool() -> ThreadPoolExecutor:
    pool = _pools.get(os.getpid())
    if pool is None:
        pool = _pools[os.getpid()] = ThreadPoolExecutor(threads(), thread_name_prefix="canvasflow-aio")
    return pool


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool(), partial(fn, *args, **kwargs))


@dataclass(frozen=True)
class Run:
    """A handle on a run whose reads are coroutines (``client.Run``'s are blocking)."""

    id: str

    async def record(self) -> RunRecord:
        return await get_run(self.id)

    async def wait(self, timeout: float = 60.0) -> RunRecord:
        return await wait(self.id, timeout)


async def start(
    name: str,
    inputs: Any = None,
    *,
    version: str | None = None,
    key: str | None = None,
    tags: Sequence[str] = (),
    priority: int | None = None,
) -> Run:
    """``canvasflow.start``: validate, journal and dispatch a run (idempotent by ``key``)."""
    run = await _call(client.start, name, inputs, version=version, key=key, tags=tags, priority=priority)
    return Run(run.id)


async def get_run(run_id: str) -> RunRecord:
    """``canvasflow.get_run``: the run and its steps."""
    return await _call(client.get_run, run_id)


def _settled(run_id: str) -> str | None:
    record = runtime().store.get_run(run_id, with_steps=False)
    return record.status if record is not None else None


async def wait(run_id: str, timeout: float = 60.0) -> RunRecord:
    """The run once terminal (or waiting for a signal); TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while True:
        status = await _call(_settled, run_id)
        if status is None:
            return await get_run(run_id)  # RunNotFound, as the client says it
        if status in TERMINAL or status == "waiting":
            return await get_run(run_id)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"run {run_id} still {status} after {timeout:g}s")
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)


async def signal(run_id: str, name: str, payload: Any = None) -> Run:
    """``canvasflow.signal``: deliver a signal to a run waiting for it."""
    await _call(client.signal, run_id, name, payload)
    return Run(run_id)


async def cancel(run_id: str, *, compensate: bool = False) -> Run:
    """``canvasflow.cancel``: no new step starts; with ``compensate`` roll it back too."""
    await _call(client.cancel, run_id, compensate=compensate)
    return Run(run_id)


async def resume(run_id: str, *, from_step: str | None = None, to_version: str | None = None) -> Run:
    """``canvasflow.resume``: run a failed or cancelled run again from where it stopped."""
    await _call(client.resume, run_id, from_step=from_step, to_version=to_version)
    return Run(run_id)


async def list_runs(
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 50,
    *,
    key: str | None = None,
    tags: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[RunRecord]:
    """``canvasflow.list_runs``: runs newest first, without their steps."""
    return await _call(
        client.list_runs, status, workflow, limit, key=key, tags=tags, since=since, until=until
    )


__all__ = ["Run", "cancel", "get_run", "list_runs", "resume", "signal", "start", "threads", "wait"]
