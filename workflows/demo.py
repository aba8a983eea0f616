"""Demo workflows: ``order_total`` is the main job ``make demo`` runs (chain, group and chord)."""

from __future__ import annotations

from celery import chain, chord

from canvasflow.workers.demo import apply_discount, fetch_order, price_item, receipt, total
from canvasflow.workflows.authoring.definition import Workflow


def _order_total(order_id: int, discount: int = 10) -> object:
    """Fetch an order, price its items in parallel (a chord), discount, and write a receipt."""
    return chain(
        fetch_order.s(order_id),
        chord([price_item.s(i) for i in range(3)], total.s()),
        apply_discount.s(discount),
        receipt.s(order_id),
    )


order_total = Workflow("order_total", version="1", build=_order_total)
