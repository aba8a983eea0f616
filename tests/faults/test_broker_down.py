"""A broker that does not answer: a clear error naming it, quickly, and nothing lost."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from canvasflow.workflows import get_run, list_runs

pytestmark = [pytest.mark.redis, pytest.mark.faults, pytest.mark.usefixtures("broker")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_start_with_a_dead_broker_fails_fast_and_keeps_the_run_resumable(broker):
    port = closed_port()
    dead = f"redis://127.0.0.1:{port}/0" if broker.name == "redis" else f"amqp://127.0.0.1:{port}//"
    env = {**os.environ, "CANVASFLOW_BROKER_URL": dead}
    code = (
        "from workflows import start\n"
        "try:\n"
        "    start('order_total', {'order_id': 1})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__); print(exc)\n"
    )
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - began
    assert out.stdout.strip().splitlines()[:1] == ["BrokerUnavailable"], out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert dead in lines[1] and "canvasflow resume" in lines[1]
    assert elapsed < 15, f"took {elapsed:.1f}s"
    run_id = lines[1].split("the run ")[1].split(" ")[0]
    record = get_run(run_id)
    assert record.status == "failed" and record.error["type"] == "BrokerUnavailable"
    assert run_id in {r.id for r in list_runs(status="failed")}
