"""Fencing on a real Redis: a delivery taken over while it was away (cut off by the network past
its lease, or re-dispatched while its worker's heartbeat was gone) changes nothing when its late
result arrives. tests/faults/test_partition.py shows the same with a real partition."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from canvasflow.compensation.claims import RollbackClaims
from canvasflow.compensation.leases import Leases
from canvasflow.workflows.runtime.state import RunState

pytestmark = [pytest.mark.redis]


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _claim(claims: RollbackClaims, run: str, holder: str, lease_ms: int = 300) -> str:
    return claims.claim(
        claim_key=f"t:{{{run}}}:compclaim",
        lease_key=f"t:{{{run}}}:complease:1.charge",
        comp_key=f"t:{{{run}}}:comp",
        field="1.charge:1",
        unit="1.charge",
        retries=0,
        holder=holder,
        lease_ms=lease_ms,
        at_most_once=False,
        max_deliveries=5,
    ).kind


def test_a_compensation_holder_taken_over_cannot_finish_the_unit_nor_drop_the_new_lease(client):
    run, claims = uuid.uuid4().hex, RollbackClaims(client)
    keys = (f"t:{{{run}}}:compclaim", f"t:{{{run}}}:comp", f"t:{{{run}}}:comperr")
    lease_key = f"t:{{{run}}}:complease:1.charge"
    assert _claim(claims, run, "host:1:old") == "new"
    time.sleep(0.4)  # the old holder is cut off: its lease is not renewed and expires
    assert _claim(claims, run, "host:2:new", lease_ms=10_000) == "interrupted"

    late = claims.finish(
        *keys, "1.charge:1", "1.charge", "compensation_failed", "host:1:old", '{"type": "X"}'
    )
    assert late == "host:2:new"  # refused, naming the holder that fenced it
    assert client.hget(keys[1], "1.charge") == b"running" and not client.hexists(keys[2], "1.charge")
    with Leases(client, ttl=10).hold(lease_key, "host:1:old"):
        pass  # the old holder's block ends: it releases only a lease of its own
    assert client.get(lease_key) == b"host:2:new"

    assert claims.finish(*keys, "1.charge:1", "1.charge", "compensated", "host:2:new", "") is None
    assert client.hget(keys[1], "1.charge") == b"compensated"


def test_a_late_failure_of_a_step_completed_elsewhere_does_not_fail_the_run(client):
    run, state = uuid.uuid4().hex, RunState(client, "t")
    state.init_run(run, generation=1, graph_json="{}", pending={"1.b": 1}, completed={}, left=2)
    assert state.claim(run, "0.a", 1, {"worker": "cut-off"}).outcome == "run"
    assert state.claim(run, "0.a", 1, {"worker": "outside"}).attempt == 2  # re-dispatched, run again
    assert state.complete(run, "0.a", json.dumps("a"), ["1.b"]).first
    assert not state.complete(run, "0.a", json.dumps("late"), ["1.b"]).first  # the late success: refused
    assert not state.fail(run, "0.a", "compensating")  # the late failure: refused too
    assert state.status(run) == "running"
    assert state.results(run, ["0.a"]) == {"0.a": "a"}
    assert state.step_states(run) == {"0.a": "succeeded", "1.b": "queued"}
