"""Steps for the history and progress tests (imported by the workers those tests start)."""

from __future__ import annotations

import time

import redis

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step
from canvasflow.workflows.runtime.execution import context


def _redis() -> redis.Redis:
    return state_client(get_settings().redis_state_url, decode_responses=True)


def gate_key(name: str) -> str:
    return f"{get_settings().key_prefix}:observed:{name}"


@step(name="observed.pages", capability="demo")
def pages(total: int, gate: str, timeout: float = 60.0) -> int:
    """Report 3 of ``total`` pages done, then wait until ``gate`` is set; then report all done."""
    ctx = context()
    ctx.progress(3, total, note="pages")
    r = _redis()
    r.set(gate_key(f"{gate}:reported"), 1, ex=600)
    deadline = time.monotonic() + timeout
    while not r.exists(gate_key(gate)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.05)
    ctx.progress(total, total, note="pages")
    return total


@step(name="observed.flaky", capability="demo", retries=2, retry_backoff=False, default_retry_delay=0.1)
def flaky(name: str) -> str:
    """Fail on the first try, succeed on the next (Celery retries it)."""
    if _redis().incr(gate_key(f"{name}:tries")) == 1:
        raise ConnectionError(f"{name}: first try fails")
    return name
