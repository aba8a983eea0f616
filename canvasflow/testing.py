"""Testing aids for applications built on canvasflow.

Unit tests, no Redis and no worker::

    from canvasflow.testing import run_inline

    def test_checkout_rolls_back():
        record = run_inline("checkout", {"order": {"id": 42}})
        assert record.status == "compensated"
        assert record.step("0.charge").compensation_status == "compensated"

See docs/testing.md. The pytest fixtures for integration tests (a real Redis and worker
processes) are in this module too: load them with ``-p canvasflow.testing`` or
``pytest_plugins = ["canvasflow.testing"]`` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from canvasflow.workflows.definition import Workflow
    from canvasflow.workflows.store.records import RunRecord


def run_inline(
    workflow: Workflow | str,
    inputs: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    signals: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Run ``workflow`` to its end in this process (see canvasflow.workflows.inline)."""
    from canvasflow.workflows.inline import run_inline as run

    return run(workflow, inputs, version=version, signals=signals)


__all__ = ["run_inline"]
