"""Steps for outage tests: each counts its executions in a Redis the outage does not touch
(``counter_url``), so a test can tell which steps ran and how often."""

from __future__ import annotations

import time
from typing import Any

import redis

from canvasflow.workers.step import step


def counts(counter_url: str, counter: str) -> dict[str, int]:
    """How many times each label's body ran."""
    raw = redis.Redis.from_url(counter_url, decode_responses=True).hgetall(counter)
    return {k: int(v) for k, v in raw.items()}


@step(name="faults.tick", capability="demo")
def tick(*parents: Any, label: str, counter: str, counter_url: str, sleep: float = 0.0) -> str:
    """Sleep, then count one execution of ``label``; returns the label."""
    if sleep:
        time.sleep(sleep)
    redis.Redis.from_url(counter_url, socket_timeout=5).hincrby(counter, label, 1)
    return label


@step(name="faults.items", capability="demo")
def items(n: int) -> list[int]:
    return list(range(n))


@step(name="faults.slow_item", capability="demo")
def slow_item(item: int, *, counter: str, counter_url: str, sleep: float = 0.0) -> int:
    """A mapper: sleep, count one execution of ``item<item>``, return the item."""
    if sleep:
        time.sleep(sleep)
    redis.Redis.from_url(counter_url, socket_timeout=5).hincrby(counter, f"item{item}", 1)
    return item


@step(name="faults.total", capability="demo")
def total(values: list[int]) -> int:
    return sum(values)


class GatewayDown(RuntimeError):
    """A flaky payment gateway's refusal (retried)."""


@step(name="faults.flaky", capability="demo", retries=3, retry_on=(GatewayDown,), retry_backoff=8)
def flaky(*parents: Any, label: str, counter: str, counter_url: str) -> str:
    """Fail the first attempt of ``label`` (a retry with a countdown follows: its message waits in
    the worker, unacknowledged, with the prefetch raised), then count one execution."""
    r = redis.Redis.from_url(counter_url, socket_timeout=5)
    if r.hincrby(counter, f"{label}:attempts", 1) == 1:
        raise GatewayDown(f"{label}: the gateway refused, try again")
    r.hincrby(counter, label, 1)
    return label
