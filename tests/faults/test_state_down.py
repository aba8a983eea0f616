"""start() while the state Redis does not answer: nothing created, one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from canvasflow.workflows import list_runs
from tests.faults.test_broker_down import closed_port

pytestmark = [pytest.mark.redis, pytest.mark.faults]


def runs_of(workflow: str) -> set[str]:
    return {r.id for r in list_runs(workflow=workflow, limit=100_000)}


def test_start_with_the_state_redis_down_creates_nothing_and_says_so_in_one_line():
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    env = {**os.environ, "CANVASFLOW_STATE_URL": dead}  # the broker still answers
    before = runs_of("order_total")
    code = (
        "from canvasflow import start\n"
        "try:\n"
        "    start('order_total', {'order_id': 1})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__); print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert lines[:1] == ["StateUnavailable"], out.stdout + out.stderr
    assert len(lines) == 2 and dead in lines[1] and "nothing was created" in lines[1]
    assert runs_of("order_total") == before  # no orphan `running` row

    cli = [
        sys.executable,
        "-m",
        "canvasflow.workflows.cli",
        "start",
        "order_total",
        "--input",
        '{"order_id": 1}',
    ]
    out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: state Redis")
    assert runs_of("order_total") == before
