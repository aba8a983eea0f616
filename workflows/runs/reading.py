"""A run as people look at it: its journal record, filled in with what only Redis knows yet.

``get_run`` (the client), ``canvasflow status`` and the console read a run here. It loads
neither the composition root nor the rollback nor the Celery app (it reads through the
process's connections, runtime/connections.py), so that a command that only shows a run
starts quickly.
"""

from __future__ import annotations

import contextlib

import redis

from canvasflow.compensation.states import comp_states
from canvasflow.workflows.runs.history import attempt_logs, run_history
from canvasflow.workflows.runs.records import get_record
from canvasflow.workflows.runtime.connections import connections
from canvasflow.workflows.store.records import TERMINAL, RunRecord


def read_run(run_id: str) -> RunRecord:
    """The run and its steps; live step states from Redis fill in what the journal lacks yet.

    When the state Redis does not answer (refused, timed out, or still loading its data set
    after a restart: redis-py's BusyLoadingError), the journal's record alone is returned."""
    record = get_record(run_id)
    if record.status not in TERMINAL:
        try:
            _live(record)
        except (redis.RedisError, OSError):  # the state Redis is down or loading: the journal alone tells
            record = get_record(run_id)  # _live may have filled in some steps before it failed
    elif any(s.status == "pending" for s in record.steps):
        # a step still running when the run ended (a cancel lets it finish) is journaled when
        # it completes; until then only Redis knows it runs
        with contextlib.suppress(redis.RedisError, OSError):  # Redis down: the journal alone tells
            _live(record)
    _observed(record)
    return record


def _observed(record: RunRecord) -> None:
    """Each step's attempts (from the journal's events) and its last reported progress."""
    rt = connections()
    logs = attempt_logs(run_history(rt, record.id))
    try:
        maps = [s.step_id for s in record.steps if s.kind == "map"]
        reported = rt.state.progress(record.id, maps)
    except (redis.RedisError, OSError):  # the state Redis is down: the journal alone tells
        reported = {}
    for step in record.steps:
        step.attempt_log = logs.get(step.step_id, [])
        step.progress = reported.get(step.step_id)


def _live(record: RunRecord) -> None:
    """Live step states from Redis fill in what the journal of an active run lacks yet."""
    run_id = record.id
    rt = connections()
    states, info, attempts = (
        rt.state.step_states(run_id),
        rt.state.step_info(run_id),
        rt.state.attempts(run_id),
    )
    unwritten = [
        s.step_id for s in record.steps if s.status == "pending" and states.get(s.step_id) == "succeeded"
    ]
    results = rt.state.results(run_id, unwritten)  # completed, journal write still queued
    for step in record.steps:
        live = states.get(step.step_id)
        if live and step.status == "pending" and live != "pending":
            step.status = live
            meta = info.get(step.step_id, {})
            step.worker = meta.get("worker", step.worker)
            step.queue = meta.get("queue", step.queue)
            step.attempts = attempts.get(step.step_id, step.attempts)
            step.result = results.get(step.step_id, step.result)
    if record.status == "compensating":
        live_comp = comp_states(rt, run_id)
        for step in record.steps:
            step.compensation_status = live_comp.get(step.step_id, step.compensation_status)
