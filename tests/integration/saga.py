"""Steps for saga tests: each appends ``do:<label>`` / ``undo:<label>`` to a Redis list, so a
test can read exactly what ran, how often and in which order."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis
from celery.exceptions import Ignore, Reject

from canvasflow.compensation import compensates
from canvasflow.config.celery_app import app
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step


def _redis() -> redis.Redis:
    return state_client(get_settings().redis_state_url, decode_responses=True)


def started_key(log: str, label: str) -> str:
    return f"{log}:started:{label}"


def effects(log: str) -> list[str]:
    return _redis().lrange(log, 0, -1)


@step(name="saga.act", capability="demo")
def act(
    *parents: Any,
    label: str,
    log: str,
    fail: bool = False,
    sleep: float = 0.0,
    comp_fails: str | None = None,
    comp_sleep: float = 0.0,
    after: str | None = None,
) -> str:
    """``after``: the label of a sibling this step waits for (30 s at most) to have started, so
    that a test can order two parallel steps without guessing how fast a worker picks them."""
    r = _redis()
    r.set(started_key(log, label), 1, ex=300)
    if after:
        deadline = time.monotonic() + 30
        while not r.exists(started_key(log, after)) and time.monotonic() < deadline:
            time.sleep(0.02)
    if sleep:
        time.sleep(sleep)
    if fail:
        r.rpush(log, f"fail:{label}")
        raise RuntimeError(f"{label} failed on purpose")
    r.rpush(log, f"do:{label}")
    return label


@compensates(act, name="saga.undo_act", retries=2, retry_backoff=False, default_retry_delay=0.05)
def undo_act(
    result: Any,
    *parents: Any,
    label: str,
    log: str,
    fail: bool = False,
    sleep: float = 0.0,
    comp_fails: str | None = None,
    comp_sleep: float = 0.0,
    after: str | None = None,
) -> None:
    r = _redis()
    if comp_sleep:
        time.sleep(comp_sleep)
    if comp_fails and not r.exists(comp_fails):  # fails until that key exists
        r.rpush(log, f"undofail:{label}")
        raise RuntimeError(f"undo of {label} failed on purpose")
    r.rpush(log, f"undo:{label}")


@step(name="saga.square", capability="demo")
def square(item: int, log: str, fail_on: int | None = None) -> int:
    if item == fail_on:
        raise RuntimeError(f"item {item} failed on purpose")
    _redis().rpush(log, f"do:item{item}")
    return item * item


@compensates(square, name="saga.unsquare", retries=0)
def unsquare(result: int, item: int, log: str, fail_on: int | None = None) -> None:
    _redis().rpush(log, f"undo:item{item}")


@step(name="saga.items", capability="demo")
def items(n: int, log: str) -> list[int]:
    _redis().rpush(log, "do:items")
    return list(range(n))


@compensates(items, name="saga.unitems", retries=0)
def unitems(result: list[int], n: int, log: str) -> None:
    _redis().rpush(log, "undo:items")


@step(name="saga.total", capability="demo")
def total(values: list[int], log: str, fail: bool = False) -> int:
    if fail:
        raise RuntimeError("reducer failed on purpose")
    _redis().rpush(log, "do:total")
    return sum(values)


@step(name="saga.maybe", capability="demo", on_failure="continue", fallback="fallback-value")
def maybe(*parents: Any, fail: bool = True) -> str:
    if fail:
        raise RuntimeError("optional step failed")
    return "real-value"


@app.task(name="saga.on_error")
def on_error(request: Any, exc: BaseException, traceback: Any, log: str, label: str) -> None:
    """A new-style errback (request, exc, traceback), as Celery calls them."""
    _redis().rpush(log, f"errback:{label}")


@app.task(name="saga.on_error_old")
def on_error_old(task_id: str, *, log: str, label: str) -> None:
    """An old-style errback: receives the failed task's id (extras keyword-only, as Celery counts
    positional parameters to tell the styles apart)."""
    _redis().rpush(log, f"errback:{label}")


@step(name="saga.returns_set", capability="demo")
def returns_set(*parents: Any) -> Any:
    return {1, 2, 3}


@step(name="saga.writes_without_undo", capability="demo", writes=True)
def writes_without_undo(*parents: Any) -> None:
    """Marked as writing, with no compensation: `canvasflow check` must name it."""


@step(name="saga.whoami", capability="demo")
def whoami(*parents: Any, question: str = "") -> dict[str, Any]:
    """The run's own id, for a peer to answer to (context() inside a step)."""
    from canvasflow import context

    return {"reply_to": context().run_id, "question": question}


@step(name="saga.field", capability="demo")
def field(value: dict[str, Any], name: str) -> Any:
    return value[name]


@step(name="saga.bounded", capability="demo", start_to_close=1.0, retries=1)
def bounded(*parents: Any, label: str, log: str, sleep: float = 0.0) -> str:
    """A step with a start_to_close deadline on its decorator (one retry after it passes)."""
    _redis().rpush(log, f"try:{label}")
    time.sleep(sleep)
    _redis().rpush(log, f"do:{label}")
    return label


@compensates(bounded, name="saga.unbounded", retries=0)
def unbounded(result: Any, *parents: Any, label: str, log: str, sleep: float = 0.0) -> None:
    _redis().rpush(log, f"undo:{label}")


@step(name="saga.declines", capability="demo")
def declines(*parents: Any, how: str) -> None:
    """A body that neither returns nor fails: Celery's Ignore, or Reject without requeue."""
    if how == "ignore":
        raise Ignore()
    raise Reject("not for me", requeue=False)


@step(name="saga.crashes", capability="demo")
def crashes(*parents: Any, label: str, log: str) -> None:
    """Kills its own process every time it runs (as a segfault or the OOM killer would)."""
    _redis().rpush(log, f"run:{label}")
    os.kill(os.getpid(), signal.SIGKILL)
