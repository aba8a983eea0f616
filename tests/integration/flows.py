"""Workflows the test workers must know too (listed in the session's CANVASFLOW_WORKFLOW_MODULES)."""

from __future__ import annotations

from celery import chain

from canvasflow.workers.demo import add, echo, fail
from canvasflow.workflows import Workflow

child = Workflow("tests.child", "1", build=lambda x: chain(add.s(x, 1), add.s(100)))
parent = Workflow("tests.parent", "1", build=lambda: chain(add.s(1, 1), child.s(result_as="x"), echo.s()))
failing_child = Workflow("tests.failing_child", "1", build=lambda: chain(add.s(1, 1), fail.s()))
parent_of_failing = Workflow(
    "tests.parent_of_failing", "1", build=lambda: chain(add.s(1, 1), failing_child.s(), echo.s())
)

from tests.integration import fusion_steps, priority_steps, saga, timing  # noqa: E402,F401  (test steps must be on the workers)
