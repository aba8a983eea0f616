"""The per-process runtime: the Celery app, Redis state, SQL store and a cache of run graphs.

Built lazily on first use in each process (a forked worker child builds its own
connections), from ``config.settings`` only. What only reads runs needs the connections alone
(connections.py: no Celery app); a runtime built after them takes them over.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from functools import cached_property

from celery import Celery

from canvasflow.config.celery_app import current_app
from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.runtime.connections import PROCESS, Connections
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.journal import JournalWriter
from canvasflow.workflows.runtime.wire import ERRBACK_TASK


class Runtime(Connections):
    """The connections (the state Redis, the journal's store), the Celery app that publishes
    steps, the journal's writer and the cache of run graphs."""

    def __init__(self, app: Celery, settings: Settings, opened: Connections | None = None) -> None:
        super().__init__(settings)
        self.app = app
        if opened is not None:
            self.take_over(opened)
        # run graphs by (run, generation), most recently used last, with the size of their JSON
        self._graphs: OrderedDict[tuple[str, int], tuple[StepGraph, int]] = OrderedDict()
        self._graph_bytes = 0

    @cached_property
    def journal(self) -> JournalWriter:
        s = self.settings
        return JournalWriter(
            self.store, s.journal_interval, max_pending=s.journal_max_pending, retry_max=s.journal_retry_max
        )

    @cached_property
    def errback(self) -> dict:
        return dict(self.app.signature(ERRBACK_TASK))

    def graph(self, run_id: str, generation: int) -> StepGraph:
        """The run's graph, from this process's cache, Redis, or the journal, in that order.

        The cache holds graphs up to ``graph_cache_bytes`` of JSON, so that with many runs in
        flight each step does not read and parse its run's graph again."""
        key = (run_id, generation)
        cached = self._graphs.get(key)
        if cached is not None:
            self._graphs.move_to_end(key)
            return cached[0]
        raw = self.state.graph_json(run_id)
        if raw is not None:
            graph, size = StepGraph.from_json(json.loads(raw)), len(raw)
        else:
            record = self.store.get_run(run_id, with_steps=False)
            if record is None:
                raise KeyError(run_id)
            graph, size = StepGraph.from_json(record.graph), len(json.dumps(record.graph))
        self._graphs[key] = (graph, size)
        self._graph_bytes += size
        while self._graph_bytes > self.settings.graph_cache_bytes and len(self._graphs) > 1:
            _, (_, dropped) = self._graphs.popitem(last=False)
            self._graph_bytes -= dropped
        return graph


# by process id: the runtime, or the connections a reader opened before it (connections.py)
_runtimes = PROCESS


def runtime() -> Runtime:
    pid = os.getpid()
    built = _runtimes.get(pid)
    if isinstance(built, Runtime):
        return built
    rt = _runtimes[pid] = Runtime(current_app(), get_settings(), built)
    return rt


def current_runtime() -> Runtime | None:
    """This process's runtime if it was built (nothing is created)."""
    built = _runtimes.get(os.getpid())
    return built if isinstance(built, Runtime) else None


def warm() -> None:
    """Open this process's connections now (a worker child calls it at start, not on its first step)."""
    rt = runtime()
    rt.redis.ping()
    rt.store.get_run("-", with_steps=False)
    rt.journal  # noqa: B018  (starts the writer thread in this process)


def reset_runtime() -> None:
    """Forget this process's runtime and connections (tests that change settings call this)."""
    _runtimes.pop(os.getpid(), None)
