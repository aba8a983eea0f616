"""Steps for outage tests: each counts its executions in a Redis the outage does not touch
(``counter_url``), so a test can tell which steps ran and how often."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
import sqlalchemy as sa

from canvasflow.compensation import compensates
from canvasflow.workers.step import step
from canvasflow.workflows.authoring.once import once
from canvasflow.workflows.runtime.execution import context


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


@step(name="faults.paced", capability="demo", rate_limit="30/m")
def paced(*parents: Any, label: str, counter: str, counter_url: str) -> str:
    """A step under Celery's rate limit (one every 2 s per worker): a message received early
    waits in the worker's token bucket. Counts one execution of ``label``."""
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


def _effect_once(label: str, db_url: str, hold: float, counter: str, counter_url: str) -> None:
    """Write the effect ``label`` to the application's database under ``once``; after a first
    write committed, note this process's pid and hold for ``hold`` s (a test kills it then).
    Counts every run of the body."""
    r = redis.Redis.from_url(counter_url, socket_timeout=5)
    r.hincrby(counter, label, 1)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn, once(conn) as first:
        if first:
            row = {"key": context().idempotency_key, "what": label, "attempt": context().attempt}
            conn.execute(
                sa.text("INSERT INTO effects (key, what, attempt) VALUES (:key, :what, :attempt)"), row
            )
    engine.dispose()
    if first and hold:  # committed: the effect and its key are in the database
        r.hset(f"{counter}:pid", label, os.getpid())
        time.sleep(hold)


@step(name="faults.ship_once", capability="demo")
def ship_once(
    *parents: Any,
    label: str,
    db_url: str,
    hold: float,
    counter: str,
    counter_url: str,
    undo_hold: float = 0.0,
) -> str:
    """The effect ``label``, once per idempotency key (``_effect_once``)."""
    _effect_once(label, db_url, hold, counter, counter_url)
    return label


@compensates(ship_once, name="faults.unship_once")
def unship_once(result: str, *parents: Any, **kw: Any) -> None:
    """Undo ``label`` with an effect ``undo:<label>`` (holding ``undo_hold`` s), once per the
    compensation's key; it takes the step's keyword arguments."""
    _effect_once(
        f"undo:{kw['label']}", kw["db_url"], kw.get("undo_hold", 0.0), kw["counter"], kw["counter_url"]
    )
