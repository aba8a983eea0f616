"""The limit scripts against a real Redis: the rate's turns, leased slots, a dead holder's slot."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
import redis

from canvasflow.workers.limits.store import ADMITTED, BOOKED, WAIT, LeaseKeeper, LimitStore, limit_base

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_url: str) -> LimitStore:
    return LimitStore(redis.Redis.from_url(redis_url))


@pytest.fixture
def base() -> str:
    return limit_base(f"cftest-{uuid.uuid4().hex[:8]}", "gateway")


def test_the_rate_books_one_turn_per_interval(store: LimitStore, base: str) -> None:
    grants = [store.acquire(base, per_second=10, horizon=1.0) for _ in range(4)]
    assert grants[0].outcome == ADMITTED
    assert [g.outcome for g in grants[1:]] == [BOOKED] * 3
    waits = [g.wait for g in grants[1:]]
    assert waits[0] == pytest.approx(0.1, abs=0.02)
    assert [round(b - a, 2) for a, b in itertools.pairwise(waits)] == [0.1, 0.1]


def test_a_turn_beyond_the_horizon_is_not_booked(store: LimitStore, base: str) -> None:
    grants = [store.acquire(base, per_second=10, horizon=0.15) for _ in range(3)]
    assert [g.outcome for g in grants] == [ADMITTED, BOOKED, WAIT]
    assert grants[2].wait == pytest.approx(0.05, abs=0.02)  # its turn (0.2 s) less the horizon
    booked_later = store.acquire(base, per_second=10, horizon=1.0)
    assert booked_later.outcome == BOOKED and booked_later.wait == pytest.approx(0.2, abs=0.02)


def test_a_burst_admits_that_many_at_once_and_a_paid_turn_is_not_paid_again(
    store: LimitStore, base: str
) -> None:
    outcomes = [store.acquire(base, per_second=1, burst=3, horizon=5).outcome for _ in range(4)]
    assert outcomes == [ADMITTED, ADMITTED, ADMITTED, BOOKED]
    assert store.acquire(base, per_second=1, burst=3, horizon=5, paid=True).outcome == ADMITTED


def test_concurrency_slots_are_held_and_released(store: LimitStore, base: str) -> None:
    def ask(holder: str) -> int:
        return store.acquire(base, per_second=None, concurrency=2, lease=30, holder=holder).outcome

    assert [ask("a"), ask("b")] == [ADMITTED, ADMITTED]
    full = store.acquire(base, per_second=None, concurrency=2, holder="c")
    assert full.outcome == WAIT and full.wait == -1
    assert ask("a") == ADMITTED  # a holder asking again keeps its one slot
    store.release(base, "a")
    assert ask("c") == ADMITTED
    assert sorted(store.holders(base)) == ["b", "c"]


def test_a_slot_whose_holder_stopped_renewing_frees_after_its_lease(store: LimitStore, base: str) -> None:
    keeper = LeaseKeeper(store, lease=1.0)
    assert store.acquire(base, per_second=None, concurrency=1, lease=1.0, holder="live").outcome == ADMITTED
    keeper.hold(base, "live")
    time.sleep(1.6)  # past the lease: renewed every third of it, so still held
    assert store.acquire(base, per_second=None, concurrency=1, lease=1.0, holder="other").outcome == WAIT
    keeper.stop()  # the process "dies": nobody renews
    deadline = time.monotonic() + 5
    while store.acquire(base, per_second=None, concurrency=1, lease=1.0, holder="other").outcome != ADMITTED:
        assert time.monotonic() < deadline, "the dead holder's slot never freed"
        time.sleep(0.1)
    assert store.holders(base) == ["other"]


def test_rate_and_slot_are_taken_together_or_not_at_all(store: LimitStore, base: str) -> None:
    assert store.acquire(base, per_second=100, concurrency=1, holder="a").outcome == ADMITTED
    refused = store.acquire(base, per_second=100, concurrency=1, holder="b")
    assert refused.outcome == WAIT and refused.wait == -1
    store.release(base, "a")
    time.sleep(0.02)
    assert store.acquire(base, per_second=100, concurrency=1, holder="b").outcome == ADMITTED  # no turn lost
