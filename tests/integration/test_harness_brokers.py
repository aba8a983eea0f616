"""The harness's broker dimension never passes silently: a RabbitMQ that does not answer fails
the tests that need it, with the reason; leaving RabbitMQ out is said in the summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
PROBE = "tests/integration/test_brokers.py::test_the_app_publishes_with_the_brokers_own_options"


def pytest_session(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A nested pytest session (its own harness, Redis database and vhost) on the probe test."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PROBE, *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_rabbitmq_that_does_not_answer_fails_its_tests_saying_why():
    # a documentation address (TEST-NET-1): nothing answers there, and it is not local, so the
    # harness does not try to start a server
    out = pytest_session(env={"CANVASFLOW_TEST_AMQP_URL": "amqp://guest:guest@192.0.2.1:5672//"})
    assert out.returncode == 1, out.stdout
    assert "1 passed, 1 error" in out.stdout, out.stdout
    assert "ERROR " + PROBE + "[amqp]" in out.stdout
    assert (
        "canvasflow tests on RabbitMQ need a broker: RabbitMQ at amqp://guest:guest@192.0.2.1:5672//"
        in out.stdout
    )
    assert "skipped" not in out.stdout


def test_leaving_rabbitmq_out_is_reported():
    out = pytest_session("--brokers=redis", env={})
    assert out.returncode == 0, out.stdout
    assert "1 passed, 1 deselected" in out.stdout, out.stdout
    assert "NOT on amqp" in out.stdout and "1 broker test(s) deselected" in out.stdout
