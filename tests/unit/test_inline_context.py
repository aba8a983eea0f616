"""run_inline gives steps and compensations a real ``context()``: run, step, attempt, idempotency
key, workflow, lineage, progress and run metadata, as a worker gives them."""

from __future__ import annotations

from typing import Any

from celery import chain

from canvasflow import Workflow, context
from canvasflow.compensation import compensates
from canvasflow.testing import run_inline
from canvasflow.workers.step import step

SEEN: list[dict[str, Any]] = []
TRIES: dict[str, int] = {}


def _seen(**extra: Any) -> None:
    ctx = context()
    SEEN.append(
        {
            "run": ctx.run_id,
            "step": ctx.step_id,
            "attempt": ctx.attempt,
            "key": ctx.idempotency_key,
            "workflow": ctx.workflow,
            "version": ctx.version,
            "lineage": ctx.lineage,
            "compensation": ctx.compensation,
            **extra,
        }
    )


@step(name="ictx.charge", capability="ictx", retries=2, retry_backoff=False)
def charge(order: str, fail_first: int = 0) -> str:
    TRIES[order] = TRIES.get(order, 0) + 1
    _seen()
    context().progress(1, 2, note="authorised")
    context().metadata["charged"] = order
    if TRIES[order] <= fail_first:
        raise ConnectionError("provider timed out")
    context().progress(2, 2, note="captured")
    return f"charged {order}"


@compensates(charge, name="ictx.refund", retries=0)
def refund(charged: str, order: str, fail_first: int = 0) -> None:
    _seen(metadata=dict(context().metadata))


@step(name="ictx.ship", capability="ictx")
def ship(charged: str, fail: bool = False) -> str:
    _seen(metadata=dict(context().metadata))
    if fail:
        raise RuntimeError("no carrier")
    return "shipped"


checkout = Workflow(
    "ictx.checkout",
    "3",
    build=lambda order, fail_first=0, fail=False: chain(
        charge.s(order, fail_first=fail_first), ship.s(fail=fail)
    ),
)


def test_a_step_reads_its_run_step_attempt_and_key_and_reports_progress():
    SEEN.clear()
    record = run_inline(checkout, {"order": "o-1", "fail_first": 1})
    assert record.status == "succeeded", record.error
    tries = [s for s in SEEN if s["step"] == "0.charge"]
    assert [s["attempt"] for s in tries] == [1, 2]
    assert {s["key"] for s in tries} == {f"{record.id}:0.charge:1"}  # one key across retries
    assert all(
        s["run"] == record.id and s["workflow"] == "ictx.checkout" and s["version"] == "3" for s in SEEN
    )
    assert tries[0]["lineage"] == [(record.id, "0.charge")]
    progress = record.step("0.charge").progress
    assert progress is not None and (progress["done"], progress["total"], progress["note"]) == (
        2,
        2,
        "captured",
    )
    shipped = next(s for s in SEEN if s["step"] == "1.ship")
    assert shipped["metadata"] == {"charged": "o-1"}  # metadata one step wrote, the next reads


def test_a_compensation_reads_its_undo_key():
    SEEN.clear()
    record = run_inline(checkout, {"order": "o-2", "fail": True})
    assert record.status == "compensated", record.error
    (undo,) = [s for s in SEEN if s["compensation"]]
    assert undo["step"] == "0.charge" and undo["key"] == f"{record.id}:0.charge:undo"
    assert undo["attempt"] == 1 and undo["metadata"] == {"charged": "o-2"}


parent = Workflow(
    "ictx.parent",
    "1",
    build=lambda order: chain(checkout.s(order=order), ship.s()),
    register=False,
)


def test_a_child_runs_steps_know_their_lineage():
    SEEN.clear()
    record = run_inline(parent, {"order": "o-3"})
    assert record.status == "succeeded", record.error
    child_step = record.steps[0].step_id  # the sub-workflow step
    child_charge = next(s for s in SEEN if s["step"] == "0.charge")
    assert child_charge["run"] != record.id
    assert child_charge["lineage"] == [(record.id, child_step), (child_charge["run"], "0.charge")]
    (outer_ship,) = [s for s in SEEN if s["run"] == record.id]
    assert outer_ship["lineage"] == [(record.id, "1.ship")]
