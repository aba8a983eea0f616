"""Chaos: many runs of a saga while worker processes are SIGKILLed at random moments.

50 runs (more, up to 200, until at least 5 kills have happened among them) of a 10-step
workflow (a chain around a chord, every step compensable), a third of them failing on purpose
at their last step, on two workers whose pool processes (and now
and then a whole worker) are killed every 0.5-2 s and replaced. What must hold afterwards:
every run ends (``succeeded``, or ``compensated`` for those that failed on purpose), every
step's side effect happened exactly once, and in a compensated run every completed step was
undone exactly once (the steps and compensations use their idempotency keys), and no step whose
body a kill interrupted waited more than 20 s to start again (default heartbeat and sweep
settings). The time from start to end of each run, and those waits, are printed (median and
worst): docs/reliability.md quotes them.
"""

from __future__ import annotations

import random
import signal
import statistics
import threading
import time
import uuid

import pytest
from celery import chain, chord

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.client import Run
from tests.faults.crashing import _redis, keyed
from tests.faults.test_compensation_crashes import QUEUES, worker_env
from tests.integration.saga import effects

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults]

RUNS = 50
MIN_KILLS = 5  # fewer would not mean anything
MAX_RUNS = 200
IN_FLIGHT = 6
ENDED = ("succeeded", "compensated", "failed", "compensation_failed", "cancelled")
LABELS = ["a", "b1", "b2", "b3", "b4", "c", "d", "e", "f", "g"]


def saga(log: str, fail: bool):
    k = dict(log=log, sleep=0.05)
    return chain(
        keyed.s(label="a", **k),
        chord([keyed.s(label=f"b{i}", **k) for i in range(1, 5)], keyed.s(label="c", **k)),
        keyed.s(label="d", **k),
        keyed.s(label="e", **k),
        keyed.s(label="f", **k),
        keyed.s(label="g", fail=fail, **k),
    )


def rerun_waits(log: str) -> list[float]:
    """Seconds between one start of a step's body and the next (its rerun after a kill)."""
    starts: dict[str, list[float]] = {}
    for entry in _starts(log):
        label, at = entry.split()
        starts.setdefault(label, []).append(float(at))
    return [
        b - a for times in starts.values() for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
    ]


def _starts(log: str) -> list[str]:
    return _redis().lrange(f"{log}:starts", 0, -1)


def _calls(log: str) -> str:
    return f"keys {_redis().lrange(f'{log}:keys', 0, -1)} starts {_starts(log)}"


def _explain(run_id: str) -> str:
    from canvasflow.compensation.rollback import comp_states
    from canvasflow.workflows.runtime.context import runtime

    rt = runtime()
    return f"{Run(run_id).status}: steps {rt.state.step_states(run_id)} comps {comp_states(rt, run_id)}"


@pytest.mark.timeout(480)
def test_fifty_sagas_under_random_kills_all_end_with_effects_once(celery_worker_factory):
    env = worker_env()
    workers = [celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env) for _ in range(2)]
    rng = random.Random(20261129)
    stop = threading.Event()
    kills = {"pool": 0, "worker": 0}

    def chaos() -> None:
        while not stop.wait(rng.uniform(0.5, 2.0)):
            alive = [w for w in workers if w.alive]
            if rng.random() < 0.2 and alive:  # a whole worker dies; another takes its place
                victim = rng.choice(alive)
                victim.kill_group(signal.SIGKILL)
                kills["worker"] += 1
                workers.remove(victim)
                workers.append(celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=env))
            elif alive:
                w = rng.choice(alive)
                if w.pool_pids:
                    w.kill_child(signal.SIGKILL)
                    kills["pool"] += 1

    tag = uuid.uuid4().hex[:6]
    plans: list[tuple[str, str, bool, float]] = []
    wfs = {
        fail: Workflow(f"t.chaos.{tag}.{fail}", "1", build=lambda log, fail=fail: saga(log, fail))
        for fail in (False, True)
    }
    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    try:
        # at least RUNS runs; more while fewer than MIN_KILLS kills have happened, so that the
        # kills fall among running sagas however fast this machine runs them (up to MAX_RUNS)
        # (at most IN_FLIGHT at once: the fleet keeps up, so a rerun's wait is recovery, not a backlog)
        i = 0
        while i < RUNS or (sum(kills.values()) < MIN_KILLS and i < MAX_RUNS):
            while sum(1 for p in plans[-2 * IN_FLIGHT :] if Run(p[0]).status not in ENDED) >= IN_FLIGHT:
                time.sleep(0.1)
            fail = i % 3 == 2
            log = f"chaos:{tag}:{i}"
            plans.append((start(wfs[fail].name, {"log": log}).id, log, fail, time.monotonic()))
            i += 1
            time.sleep(0.1)
        ended: dict[str, float] = {}
        deadline = time.monotonic() + 240
        while len(ended) < len(plans) and time.monotonic() < deadline:
            for run_id, _, _, _ in plans:
                if run_id not in ended and Run(run_id).status in ENDED:
                    ended[run_id] = time.monotonic()
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)

    stuck = {run_id: _explain(run_id) for run_id, *_ in plans if run_id not in ended}
    assert not stuck, f"runs that never ended: {stuck} (kills: {kills})"
    durations: list[float] = []
    waits: list[float] = []
    for run_id, log, fail, started in plans:
        waits += rerun_waits(log)
        record = Run(run_id).record
        entries = effects(log)
        done = [e[3:] for e in entries if e.startswith("do:")]
        undone = [e[5:] for e in entries if e.startswith("undo:")]
        assert len(done) == len(set(done)), f"{run_id}: a step's effect happened twice: {entries}"
        assert len(undone) == len(set(undone)), f"{run_id}: compensated twice: {entries}"
        if fail:
            assert record.status == "compensated", (run_id, record.status, record.error)
            assert sorted(done) == sorted(LABELS[:-1]) and sorted(undone) == sorted(done), (
                f"{run_id}: {entries}; {_explain(run_id)}; {_calls(log)}"
            )
            assert undone.index("a") == len(undone) - 1  # the first step is undone last
        else:
            assert record.status == "succeeded", (run_id, record.status, record.error)
            assert sorted(done) == sorted(LABELS) and not undone, (
                f"{run_id}: {entries}; {_explain(run_id)}; {_calls(log)}"
            )
        durations.append(ended[run_id] - started)
    waits.sort()
    print(
        f"\nchaos: {len(plans)} runs, kills {kills}; run time median {statistics.median(durations):.1f}s, "
        f"worst {max(durations):.1f}s; {len(waits)} reruns waited "
        + (
            f"median {statistics.median(waits):.1f}s, p99 {waits[int(0.99 * (len(waits) - 1))]:.1f}s, "
            if waits
            else ""
        )
        + f"worst {max(waits, default=0):.1f}s"
    )
    assert max(waits, default=0) <= 20, f"an interrupted step waited too long to run again: {waits[-5:]}"
    assert kills["pool"] + kills["worker"] >= MIN_KILLS, f"too few kills to mean anything: {kills}"
