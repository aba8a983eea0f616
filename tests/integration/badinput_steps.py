"""Steps and workflows of the bad-input tests (the workers those tests start import this module)."""

from __future__ import annotations

import hashlib
import threading

from celery import chain

from canvasflow import blobs, step
from canvasflow.workers.demo import add, echo
from canvasflow.workflows import Workflow, wait_signal


class Unrebuildable(Exception):
    """Needs two arguments and holds a lock: Celery cannot pickle it, so it wraps it."""

    def __init__(self, account: str, amount: int) -> None:
        super().__init__(f"account {account} cannot take {amount}")
        self.lock = threading.Lock()


@step(name="bi.unrebuildable", capability="demo")
def unrebuildable(*_: object) -> None:
    raise Unrebuildable("acme-7", 42)


@step(name="bi.big", capability="demo")
def big(size: int) -> str:
    return "x" * size


@step(name="bi.blob_make", capability="demo")
def blob_make(megabytes: int) -> str:
    return blobs.put(bytes(range(256)) * (megabytes * 4096))


@step(name="bi.blob_digest", capability="demo")
def blob_digest(key: str) -> dict:
    data = blobs.get(key)
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _simple(x: int = 1) -> object:
    return chain(add.s(x, 2), echo.s())


simple = Workflow("bi.simple", "1", build=_simple)
waits = Workflow("bi.waits", "1", build=lambda: chain(add.s(1, 1), wait_signal("approved"), echo.s()))
unrebuildable_flow = Workflow(
    "bi.unrebuildable_flow", "1", build=lambda: chain(add.s(1, 1), unrebuildable.s())
)
big_result = Workflow("bi.big_result", "1", build=lambda size: chain(big.s(size), echo.s()))
blob_flow = Workflow(
    "bi.blob_flow", "1", build=lambda megabytes: chain(blob_make.s(megabytes), blob_digest.s())
)


@step(name="bi.charge", capability="demo", secret=["card_number"])
def charge(card_number: str, amount: int) -> dict:
    return {"charged": amount, "last4": card_number[-4:]}


def _pay(card_number: str, amount: int) -> object:
    return chain(charge.s(card_number, amount), echo.s())


pay = Workflow("bi.pay", "1", build=_pay)
