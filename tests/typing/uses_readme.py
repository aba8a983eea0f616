"""Typed uses of the README's steps: mypy --strict must accept every line (see test_installed)."""

from typing import assert_type

from celery.result import AsyncResult
from myapp.checkout import charge, refund
from myapp.steps import fetch_order, price_item, total

assert_type(fetch_order(42), dict[str, int])
assert_type(total([10, 20]), int)
assert_type(charge({"id": 1}), dict[str, int])
assert_type(refund({"charged": 30}, {"id": 1}), None)
assert_type(total.run([1]), int)
later: AsyncResult = total.delay([1, 2])
partial = price_item.s(2)  # in a chain or chord the order comes first, at run time
name: str = charge.name
