"""Wrong calls of the README's steps: mypy --strict must report each marked line, with its code."""

from myapp.checkout import charge, refund
from myapp.steps import fetch_order, total

charge("not an order")  # E: arg-type
fetch_order(order_id="42")  # E: arg-type
total.delay(["1"])  # E: list-item
refund({"charged": 30})  # E: call-arg
doubled: str = total([1])  # E: assignment
