"""canvasflow.testing's pytest plugin, used as an application would: a project of its own (steps,
a workflow, a test file using the fixtures) run by a separate ``pytest -p canvasflow.testing``
with none of this session's settings. Once with a Redis that answers (a database is claimed
on it), once with none (the plugin starts redis-server)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis, pytest.mark.worker]

ROOT = Path(__file__).resolve().parents[2]

FLOWS = """
from celery import chain
from canvasflow import Workflow, compensates, step

@step(name="shop.price", capability="shop")
def price(sku: str) -> int:
    return {"apple": 3, "pear": 4}[sku]

@step(name="shop.double", capability="shop")
def double(amount: int) -> int:
    return amount * 2

@step(name="shop.charge", capability="shop")
def charge(amount: int) -> dict:
    return {"charged": amount}

@compensates(charge, name="shop.refund")
def refund(result: dict, amount: int) -> None:
    print("refunded", result["charged"])

@step(name="shop.ship", capability="shop")
def ship(charged: dict) -> None:
    raise RuntimeError("no courier")

def priced(sku: str):
    return chain(price.s(sku), double.s())

def checkout(amount: int):
    return chain(charge.s(amount), ship.s())

Workflow("shop.priced", "1", build=priced)
Workflow("shop.checkout", "1", build=checkout)
"""

TESTS = """
import redis
from canvasflow import start
from canvasflow.testing import run_inline

import myflows  # noqa: F401

def test_unit_without_anything():
    assert run_inline("shop.priced", {"sku": "pear"}).result == 8

def test_with_a_real_worker(canvasflow_worker, canvasflow_redis_url):
    assert redis.Redis.from_url(canvasflow_redis_url).ping()
    record = start("shop.priced", {"sku": "apple"}).wait(60)
    assert record.status == "succeeded" and record.result == 6
    assert record.steps[0].worker.startswith(canvasflow_worker.hostname.split("@")[0] + "@")

def test_a_saga_on_a_worker_of_the_factory(canvasflow_worker_factory):
    worker = canvasflow_worker_factory(["shop"])
    record = start("shop.checkout", {"amount": 5}).wait(60)
    assert record.status == "compensated"
    assert run_inline("shop.checkout", {"amount": 5}).status == record.status
    assert worker.log().count("refunded 5") == 1
"""


@pytest.mark.parametrize("redis_there", [True, False], ids=["claims-a-database", "starts-redis-server"])
def test_an_applications_tests_pass_with_the_fixtures(tmp_path: Path, redis_there: bool):
    (tmp_path / "myflows.py").write_text(textwrap.dedent(FLOWS))
    (tmp_path / "test_shop.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "pytest.ini").write_text("[pytest]\ncanvasflow_workflow_modules = myflows\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANVASFLOW_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["CANVASFLOW_LOG_FORMAT"] = "console"
    if not redis_there:
        env["CANVASFLOW_BROKER_URL"] = "redis://127.0.0.1:1/0"  # nothing answers there
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "canvasflow.testing", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 passed" in out.stdout
