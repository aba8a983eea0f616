"""Taking over a dead engine's steps and ``route_timeout``, on each broker (Redis and RabbitMQ).

The worker of a live engine moves the steps queued on another engine of its capability: all of
them when that engine has no live worker, the oldest one past ``route_timeout`` when it is
idle (docs/routing.md, workers/routing/takeover.py).
"""

from __future__ import annotations

from collections import Counter

import pytest

from canvasflow import get_run, start
from tests.integration.test_routing import engine_env, queues, start_engines, wait_live, wait_step

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]


def test_a_step_held_by_a_killed_engine_worker_is_taken_over_by_the_next_engine(celery_worker_factory):
    workers = start_engines(celery_worker_factory, "rba", "primary", "backup")
    run = start("rt.ba_slow")
    wait_step(run.id, "1.ba_slow", "running")
    # mid-step: the message goes back to cap.rba.primary, unread (RabbitMQ: at once; Redis: after
    # the visibility timeout), and the backup engine's worker takes it over from there
    workers["primary"].kill_group()
    record = run.wait(90)
    assert record.status == "succeeded", record.error
    assert [s.result for s in record.steps] == ["primary", "backup", "backup", "backup"]
    assert record.step("1.ba_slow").attempts == 2
    # who sent it to the backup: the backup worker taking over the dead engine's queue, or the
    # recovery sweep (at once when the dead node's heartbeat expires), whichever comes first
    taken = record.step("1.ba_slow").route
    assert taken["engine"] == "rba/backup", taken
    if "taken over" in taken["reason"]:
        assert "took over steps queued on an engine with no live worker" in workers["backup"].read_log()
    # the attempt the killed worker never finished is journaled, then the one that ran
    decisions = record.step("1.ba_slow").routes
    assert [(d["engine"], d["outcome"]) for d in decisions] == [
        ("rba/primary", "engine died"),
        ("rba/backup", "ran"),
    ]
    assert decisions[0]["worker"] == workers["primary"].hostname and decisions[0]["attempt"] == 1
    tries = [(a["attempt"], a["status"], a["worker"]) for a in get_run(run.id).step("1.ba_slow").attempt_log]
    assert tries[0] == (1, "worker died", workers["primary"].hostname), tries
    assert tries[-1][1] == "succeeded" and tries[-1][2] == workers["backup"].hostname, tries


def test_a_step_queued_past_route_timeout_is_taken_by_an_idle_engine(celery_worker_factory):
    env = {**engine_env(), "CANVASFLOW_ROUTE_TIMEOUT": "0.5"}
    for engine in ("busy", "spare"):
        celery_worker_factory(queues=queues("rto", engine), concurrency=1, extra_env=env)
    wait_live({"rto/busy", "rto/spare"})
    record = start("rt.rto").wait(60)
    assert record.status == "succeeded", record.error
    ran = Counter(s.result for s in record.steps)
    assert ran["spare"] >= 1 and ran["busy"] >= 1, ran  # best_available sent all four to busy
    stolen = [s.route for s in record.steps if s.result == "spare"]
    assert all("route_timeout" in r["reason"] and r["tried"] == ["rto/busy"] for r in stolen), stolen
    chains = [[(d["engine"], d["outcome"]) for d in s.routes] for s in record.steps if s.result == "spare"]
    assert all(c == [("rto/busy", "timed out"), ("rto/spare", "ran")] for c in chains), chains
