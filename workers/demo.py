"""Demo steps: a small order pipeline used by ``make demo`` and the tests.

Each is a real step on its own capability queue; they sleep a little so timings mean something.
"""

from __future__ import annotations

import time

import structlog

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step

log = structlog.get_logger(__name__)


@step(name="demo.fetch_order", capability="demo")
def fetch_order(order_id: int) -> dict:
    time.sleep(0.02)
    log.info("fetched order", order_id=order_id)
    return {"id": order_id, "items": [{"sku": f"sku-{i}", "price": 10 * (i + 1)} for i in range(3)]}


@step(name="demo.price_item", capability="demo")
def price_item(order: dict, index: int) -> int:
    time.sleep(0.02)
    return int(order["items"][index]["price"])


@step(name="demo.total", capability="demo")
def total(prices: list[int]) -> int:
    return sum(prices)


@step(name="demo.apply_discount", capability="demo")
def apply_discount(amount: int, percent: int) -> int:
    return amount - amount * percent // 100


@step(name="demo.receipt", capability="demo")
def receipt(amount: int, order_id: int) -> str:
    return f"order {order_id}: total {amount}"


# ---- tiny arithmetic steps, used by the canvas corpus and benchmarks ----


@step(name="demo.add", capability="demo")
def add(x: int, y: int = 0) -> int:
    return x + y


@step(name="demo.mul", capability="demo")
def mul(x: int, y: int) -> int:
    return x * y


@step(name="demo.xsum", capability="demo")
def xsum(values: list) -> int:
    return sum(v if isinstance(v, int) else xsum(v) for v in values)


@step(name="demo.echo", capability="demo")
def echo(*args: object) -> list:
    return list(args)


@step(name="demo.noop", capability="demo")
def noop(*args: object, **kwargs: object) -> None:
    return None


@step(name="demo.sleep", capability="demo")
def sleep(seconds: float, *_: object) -> float:
    time.sleep(seconds)
    return seconds


@step(name="demo.fail", capability="demo")
def fail(*args: object, message: str = "boom") -> None:
    raise RuntimeError(message)


@step(name="demo.gate", capability="demo")
def gate(value: object, name: str) -> object:
    """Pass ``value`` through once the gate ``name`` is open (a Redis key); fail until then.

    Lets a demo or test make a run fail, open the gate, and resume it.
    """
    s = get_settings()
    client = state_client(s.redis_state_url)
    if not client.exists(f"{s.key_prefix}:gate:{name}"):
        raise RuntimeError(f"gate {name} is closed")
    return value


def open_gate(name: str) -> None:
    s = get_settings()
    state_client(s.redis_state_url).set(f"{s.key_prefix}:gate:{name}", 1, ex=3600)
