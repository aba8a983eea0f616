"""Steps of the chain-fusion tests (tests/integration/test_fusion.py); the test workers load them."""

from __future__ import annotations

import time
from typing import Any

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step

OTHER_CAPABILITY = "fuseother"


@step(name="fuse.pair", capability="demo")
def pair(x: int) -> tuple[int, int]:
    """A tuple: a message carries it as a JSON list, and so must fusion."""
    return (x, x + 1)


@step(name="fuse.kind", capability="demo")
def kind(value: Any) -> str:
    return type(value).__name__


@step(name="fuse.elsewhere", capability=OTHER_CAPABILITY)
def elsewhere(*parents: Any) -> str:
    return "elsewhere"


@step(name="fuse.flaky", capability="demo", retries=2, retry_backoff=False, default_retry_delay=0.1)
def flaky(*parents: Any, key: str) -> str:
    """Fails on its first try, succeeds on the next (Celery's autoretry)."""
    client = state_client(get_settings().redis_state_url)
    if client.incr(key) == 1:
        client.expire(key, 600)
        raise ConnectionError("first try fails")
    return "second try"


@step(name="fuse.flaky_later", capability="demo", retries=2, retry_backoff=False, default_retry_delay=6)
def flaky_later(*parents: Any, key: str) -> str:
    """Fails on its first try; its retry waits 6 s in a worker (longer than a fast sweep takes to
    judge a step lost), then succeeds. Notes when each of its runs began in the list ``key``."""
    client = state_client(get_settings().redis_state_url)
    runs = client.rpush(key, time.time())
    client.expire(key, 600)
    if runs == 1:
        raise ConnectionError("first try fails")
    return "second try"


@step(name="fuse.pay", capability="demo", secret=["card_number"])
def pay(*parents: Any, card_number: str, amount: int) -> str:
    """A secret argument: Flower shows ``'***'`` for it, fused or not."""
    return f"paid {amount} with ...{card_number[-4:]}"
