"""Testing aids for applications built on canvasflow; importing this module needs no pytest.

Unit tests, no Redis and no worker::

    from canvasflow.testing import FakeClock, run_inline

    def test_checkout_rolls_back():
        record = run_inline("checkout", {"order": {"id": 42}})
        assert record.status == "compensated"
        assert record.step("0.charge").compensation_status == "compensated"

Steps and compensations get a real ``context()`` there (run, step, attempt, idempotency key,
progress, metadata), and ``run_inline(..., clock=FakeClock())`` measures deadlines by a clock
the test moves. See docs/testing.md. The pytest fixtures for integration tests (a real Redis
and worker processes) are the plugin ``canvasflow.pytest_plugin``: load it with
``-p canvasflow.testing`` (this module names it in ``pytest_plugins``), ``-p
canvasflow.pytest_plugin``, or ``pytest_plugins = ["canvasflow.testing"]`` in a conftest.py.
"""

from __future__ import annotations

import canvasflow.app  # noqa: F401  (the composition root: the runtime's tasks, e.g. a map's chunks)
from canvasflow.workflows.runs.inline import run_inline
from canvasflow.workflows.runs.inline_clock import FakeClock

# pytest loads the fixtures from here when this module is given as a plugin (-p canvasflow.testing)
pytest_plugins = ["canvasflow.pytest_plugin"]

__all__ = ["FakeClock", "run_inline"]
