"""canvasflow.testing imports without pytest, and its FakeClock drives an inline run's deadlines."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import chain

from canvasflow import Workflow, step
from canvasflow.config.errors import InputError
from canvasflow.testing import FakeClock, run_inline
from tests.layout import ROOT

WITHOUT_PYTEST = """
import sys
sys.modules["pytest"] = None  # `import pytest` raises ImportError from here on
import canvasflow.testing
from canvasflow.workers.demo import add
from canvasflow import Workflow
wf = Workflow("aids.no_pytest", "1", build=lambda: add.s(2, 3))
record = canvasflow.testing.run_inline(wf)
assert record.status == "succeeded" and record.result == 5, record
assert "canvasflow.pytest_plugin" not in sys.modules
print("ok")
"""


def test_the_testing_module_imports_and_runs_without_pytest():
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYTEST], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


CLOCK = FakeClock()


@step(name="aids.work", capability="aids", start_to_close=30)
def work(*parents: object, label: str, takes: float = 0.0) -> str:
    CLOCK.advance(takes)  # the body "takes" this long on the test's clock
    return label


def _flow(timeout: float | None = None) -> Workflow:
    return Workflow(
        f"aids.clock.{timeout}",
        "1",
        build=lambda first=0.0, second=0.0: chain(
            work.s(label="a", takes=first), work.s(label="b", takes=second)
        ),
        timeout=timeout,
        register=False,
    )


def test_a_step_over_its_start_to_close_on_the_fake_clock_fails_as_on_a_worker():
    record = run_inline(_flow(), {"first": 31}, clock=CLOCK)
    assert record.status == "failed"
    error = record.step("0.work").error
    assert error["type"] == "DeadlineExceeded" and error["message"].startswith("start_to_close:")
    assert record.step("1.work").status == "skipped"
    assert run_inline(_flow(), {"first": 29, "second": 29}, clock=CLOCK).status == "succeeded"


def test_the_run_timeout_on_the_fake_clock_fails_the_run_before_the_next_step():
    record = run_inline(_flow(timeout=50), {"first": 25, "second": 25}, clock=CLOCK)
    assert record.status == "succeeded"  # 25 s, then the second step starts at 25 s
    record = run_inline(_flow(timeout=20), {"first": 25}, clock=CLOCK)
    assert record.status == "failed"
    assert record.error["type"] == "DeadlineExceeded"
    assert record.error["message"] == "timeout: the run did not finish within 20s"
    assert (record.step("0.work").status, record.step("1.work").status) == ("succeeded", "skipped")


def test_without_a_clock_deadlines_are_not_applied_inline():
    assert run_inline(_flow(timeout=1), {"first": 100}).status == "succeeded"


def test_the_fake_clock_refuses_to_go_back():
    clock = FakeClock(10)
    assert clock.advance(5) == 15 and clock.sleep(1) == 16 and clock.now() == 16
    with pytest.raises(InputError, match="seconds must be a number >= 0"):
        clock.advance(-1)
