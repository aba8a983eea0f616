"""Steps with limits, for the limit tests (the test workers import this module).

Each appends ``[event, label, time]`` to a Redis list named by ``probe`` (``start`` before its
body sleeps, ``end`` after), so a test can tell how many ran at once."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.limits import Limit
from canvasflow.workers.step import step

CAPABILITY = "limits"


def _redis() -> redis.Redis:
    return state_client(get_settings().redis_state_url, decode_responses=True)


def probe_events(probe: str) -> list[tuple[str, str, float]]:
    return [tuple(json.loads(x)) for x in _redis().lrange(probe, 0, -1)]  # type: ignore[misc]


def spans(probe: str) -> dict[str, list[tuple[float, float]]]:
    """Each label's (start, end) intervals; an end closes the latest start of its label, so the start
    of a delivery that died (no end) is left out."""
    opened: dict[str, list[float]] = {}
    out: dict[str, list[tuple[float, float]]] = {}
    for kind, label, at in probe_events(probe):
        if kind == "start":
            opened.setdefault(label, []).append(at)
        else:
            out.setdefault(label, []).append((opened[label].pop(), at))
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end before a start at the same instant)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, delta in edges:
        now += delta
        most = max(most, now)
    return most


def _probe(probe: str, event: str, label: str) -> None:
    _redis().rpush(probe, json.dumps([event, label, time.time()]))


def _busy(probe: str, label: str, sleep: float) -> str:
    """Sleep ``sleep`` seconds between a ``start`` and an ``end`` probe of ``label``."""
    _probe(probe, "start", label)
    time.sleep(sleep)
    _probe(probe, "end", label)
    return label


@step(name="limits.charge", capability=CAPABILITY, limits=Limit(rate="5/s", name="tests.gateway"))
def charge(i: int) -> int:
    """At most 5 a second across every worker."""
    return i


@step(
    name="limits.call",
    capability=CAPABILITY,
    limits=Limit(concurrency=2, key=lambda customer, **_: customer),
)
def call(customer: str, *, probe: str, sleep: float) -> str:
    """At most 2 at once per customer across every worker."""
    return _busy(probe, customer, sleep)


@step(
    name="limits.exclusive",
    capability=CAPABILITY,
    limits=Limit(concurrency=1, key=lambda account, **_: account),
)
def exclusive(account: str, *, probe: str, label: str, sleep: float) -> Any:
    """One at a time per account."""
    return _busy(probe, label, sleep)


@step(
    name="limits.flaky",
    capability=CAPABILITY,
    limits=Limit(rate="1/s", name="tests.flaky"),
    retries=2,
    retry_backoff=False,
    default_retry_delay=0,
)
def flaky(*, probe: str) -> int:
    """Fails its first two attempts (retried at once by Celery), then succeeds."""
    _probe(probe, "start", "flaky")
    attempt = len(probe_events(probe))
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@step(
    name="limits.by_customer",
    capability=CAPABILITY,
    limits=Limit(concurrency=1, key=lambda order, **_: order["customer"]),
)
def by_customer(order: dict[str, Any]) -> str:
    return str(order["id"])
