"""Starting many runs of one workflow at once: ``start_many(name, [inputs, ...])``.

The same refusals as ``start`` and all or nothing before anything is written: every input is
validated and compiled first, and when any is refused, :class:`InputError` names each refused
input by its position and nothing is journaled, stored or published. Then the runs are
journaled in one transaction (multi-row ``INSERT``s), their Redis state written in one
pipeline, and their first steps published through one producer in batches: a few round trips
for the whole batch instead of several per run.

Idempotency is per run, as with ``start``: an input given a business key whose run exists
(or a key given twice in the batch) gets that run's id, and nothing is started for it.

The cyclic garbage collector is paused while a batch is prepared and started (and restored
after, as it was): a batch allocates many small objects that all live until it ends, and each
collection would walk them again for nothing (a fifth of a batch's time).
"""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import structlog

from canvasflow.config.errors import CanvasflowError, InputError
from canvasflow.workflows.authoring.definition import Workflow, registry
from canvasflow.workflows.runs.launch import (
    check_state,
    launch_of,
    record_definition,
    state_down,
    state_written,
)
from canvasflow.workflows.runs.lifecycle import checked_key, checked_tags, launch_ready, prepare
from canvasflow.workflows.runtime import events, publishing
from canvasflow.workflows.runtime.active import active_key
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.seed import Seed
from canvasflow.workflows.store.creation import NewRun

log = structlog.get_logger("canvasflow.lifecycle")
SHOWN = 10  # refused inputs named in the error, at most


def start_many(
    name: str,
    inputs: Sequence[Any],
    *,
    version: str | None = None,
    keys: Sequence[str | None] | None = None,
    tags: Sequence[str] = (),
) -> list[str]:
    """Start one run of workflow ``name`` per item of ``inputs``; their ids, in order.

    ``keys`` (as long as ``inputs``; ``None`` items for no key) makes each start idempotent;
    ``tags`` go on every run. Raises InputError, starting nothing, when any input is refused.
    """
    items = list(inputs)
    run_keys: list[str | None] = [checked_key(k) for k in keys] if keys is not None else [None] * len(items)
    if len(run_keys) != len(items):
        raise InputError(f"start_many: {len(run_keys)} keys for {len(items)} inputs; give one per input")
    tags = checked_tags(tags)
    if not items:
        return []
    wf = registry.get(name, version)
    with _collector_paused():
        return _start(wf, items, run_keys, tags)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _start(wf: Workflow, items: list[Any], run_keys: list[str | None], tags: list[str]) -> list[str]:
    rt, name = runtime(), wf.name
    prepared, problems = [], []
    for i, raw in enumerate(items):
        try:
            prepared.append(prepare(rt, wf, raw))
        except CanvasflowError as exc:
            problems.append(f"input {i}: {exc}")
    _check_keys(rt, name, run_keys, problems)
    if problems:
        more = len(problems) - SHOWN
        shown = "; ".join(problems[:SHOWN]) + (f"; and {more} more" if more > 0 else "")
        raise InputError(
            f"start_many {name}: {len(problems)} of {len(items)} inputs refused, nothing was started: {shown}"
        )
    check_state(rt)
    record_definition(rt, wf)
    runs = [
        launch_of(rt, uuid.uuid4().hex, wf, values, graph, key=key, tags=tags)
        for (values, graph), key in zip(prepared, run_keys, strict=True)
    ]
    ids = rt.store.create_runs([NewRun(**r.journal) for r in runs])
    both = zip(runs, prepared, ids, strict=True)
    fresh = [(r, graph) for r, (_, graph), run_id in both if r.journal["run_id"] == run_id]
    if not fresh:
        return ids
    try:
        seeds = [Seed(r.journal["run_id"], generation=1, **r.state) for r, _ in fresh]
        rt.state.init_new_runs(seeds, active_key(rt))
        state_written(rt)
    except (redis.RedisError, OSError) as exc:
        for r, _ in fresh:  # went down between the check and here: leave no orphan
            rt.store.delete_run(r.journal["run_id"])
        raise state_down(rt, exc) from None
    with publishing.batch(rt.app, rt.settings.publish_batch_size, len(fresh)):
        for r, graph in fresh:
            run_id = r.journal["run_id"]
            events.run_started(run_id, wf.name, wf.version, 1, None)
            launch_ready(rt, run_id, 1, graph, graph.roots())
    held = len(ids) - len(fresh)
    log.info("runs started", workflow=wf.name, version=wf.version, runs=len(fresh), held=held)
    return ids


def _check_keys(rt: Any, name: str, keys: Sequence[str | None], problems: list[str]) -> None:
    """A key held by a run of another workflow refuses its input (as ``start`` does)."""
    wanted = [k for k in keys if k is not None]
    if not wanted:
        return
    for key, workflow in rt.store.workflows_by_keys(wanted).items():
        if workflow != name:
            i = list(keys).index(key)
            problems.append(
                f"input {i}: key {key!r} is held by a run of workflow {workflow!r}, not {name!r} "
                "(a key names one run across all workflows)"
            )
