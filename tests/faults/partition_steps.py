"""Steps for partition tests: each writes its effect to a ledger file on disk (reachable from a
test host in its own network namespace, which shares the filesystem but not the network), with
the idempotency key and the worker, so a test can tell how often an effect happened and where."""

from __future__ import annotations

import time
from typing import Any

from canvasflow.compensation import compensates
from canvasflow.workers.step import step
from canvasflow.workflows.runtime.execution import context


def _write(ledger: str, what: str) -> None:
    ctx = context()
    with open(ledger, "a") as f:  # one short append per effect: lines do not interleave
        f.write(f"{what}\t{ctx.idempotency_key}\t{ctx.worker}\t{ctx.attempt}\n")


def ledger_lines(ledger: str, what: str) -> list[tuple[str, str, int]]:
    """(idempotency key, worker, attempt) of each time ``what`` happened."""
    try:
        with open(ledger) as f:
            rows = [line.rstrip("\n").split("\t") for line in f]
    except FileNotFoundError:
        return []
    return [(key, worker, int(attempt)) for name, key, worker, attempt in rows if name == what]


@step(name="faults.effect", capability="demo")
def effect(
    *parents: Any, label: str, ledger: str, first_sleep: float = 0.0, undo_first_sleep: float = 0.0
) -> str:
    """Sleep ``first_sleep`` on the first attempt only (the delivery a partition strands), then
    write ``do:<label>`` to the ledger."""
    if context().attempt == 1:
        time.sleep(first_sleep)
    _write(ledger, f"do:{label}")
    return label


@compensates(effect)
def undo_effect(
    result: str,
    *parents: Any,
    label: str,
    ledger: str,
    first_sleep: float = 0.0,
    undo_first_sleep: float = 0.0,
) -> None:
    """Sleep ``undo_first_sleep`` on the first delivery only, then write ``undo:<label>``."""
    if context().attempt == 1:
        time.sleep(undo_first_sleep)
    _write(ledger, f"undo:{label}")


class Declined(RuntimeError):
    """The order was declined (a final failure: the run rolls back)."""


@step(name="faults.decline", capability="demo")
def decline(*parents: Any) -> None:
    raise Declined("declined")
