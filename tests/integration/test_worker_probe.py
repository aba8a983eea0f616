"""`canvasflow worker-probe`, the pods' liveness/readiness check: exit 0 while this host's worker
node writes heartbeats, 1 once it has stopped (or never started)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.test_killed_workers import QUEUES

pytestmark = [pytest.mark.redis, pytest.mark.worker]

ROOT = Path(__file__).resolve().parents[2]


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", "worker-probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_probe_follows_the_workers_heartbeat(celery_worker_factory):
    name = f"probe{uuid.uuid4().hex[:6]}"
    node = f"{name}@{socket.gethostname()}"  # what `canvasflow worker` names a pod's node
    assert probe("--name", name).returncode == 1  # not started yet: not ready

    worker = celery_worker_factory(queues=QUEUES, concurrency=1, hostname=node)
    deadline = time.monotonic() + 30  # the first beat follows worker_ready
    while (done := probe("--name", name, "--json")).returncode != 0:
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(0.5)
    answer = json.loads(done.stdout)
    assert answer["node"] == node and answer["alive"] is True and answer["age"] < answer["max_age"]
    assert probe("--node", node).returncode == 0

    assert worker.stop() == 0  # a warm shutdown clears the heartbeat at once
    done = probe("--node", node)
    assert done.returncode == 1 and "no fresh heartbeat" in done.stdout


def test_a_stale_heartbeat_fails_the_probe(celery_worker_factory):
    slow_beats = {"CANVASFLOW_HEARTBEAT_INTERVAL": "120", "CANVASFLOW_HEARTBEAT_TTL": "240"}
    worker = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=slow_beats)
    deadline = time.monotonic() + 30
    while probe("--node", worker.hostname).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(1.5)  # the next beat is two minutes away: this one ages
    done = probe("--node", worker.hostname, "--max-age", "1", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["age"] > 1


def test_the_probe_needs_a_name_or_a_node():
    done = probe()
    assert done.returncode == 2 and "--name" in done.stderr
