"""canvasflow on each broker (Redis and RabbitMQ): the demo end to end as a user runs it, and
``canvasflow queues`` reporting depth and consumers from the broker itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from canvasflow.config.celery_app import app
from canvasflow.config.local_redis import free_port
from canvasflow.config.settings import redact
from tests.harness.plugin import Broker

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ["cap.demo", "canvasflow", "canvasflow.control"]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m canvasflow.workflows.cli ARGS`` as a user runs it, with the session's env."""
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_runs_end_to_end_and_starts_a_redis_for_results_and_state(
    broker: Broker, tmp_path, celery_worker_factory
):
    # celery_worker_factory (no worker started) stops the module's shared worker: the demo's
    # own worker is then the only consumer of the session's queues on this broker
    dead = f"redis://127.0.0.1:{free_port()}/0"
    out = cli(
        "demo",
        env={
            "CANVASFLOW_RESULT_BACKEND": dead,
            "CANVASFLOW_STATE_URL": dead,
            "CANVASFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "no Redis answered for CANVASFLOW_RESULT_BACKEND, CANVASFLOW_STATE_URL; started one" in out.stdout
    assert f"broker {redact(broker.url)};" in out.stdout
    assert "(order_total v1): succeeded" in out.stdout
    assert "result: 'order 42: total 54'" in out.stdout
    steps = [
        line.split()
        for line in out.stdout.splitlines()
        if line.split()[1:2] and line.split()[1].startswith("demo.")
    ]
    assert len(steps) == 7 and all(s[2] == "succeeded" for s in steps), steps  # the chain around the chord


@pytest.mark.brokers("amqp")
def test_demo_json_on_rabbitmq_is_json_only(broker: Broker, tmp_path, celery_worker_factory):
    out = cli("demo", "--json", env={"CANVASFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"})
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "succeeded" and data["result"] == "order 42: total 54"
    assert f"broker {redact(broker.url)};" in out.stderr


@pytest.mark.brokers("amqp")
def test_demo_on_a_rabbitmq_that_does_not_answer_says_so_in_one_line(broker: Broker):
    out = cli("demo", env={"CANVASFLOW_BROKER_URL": f"amqp://guest:secret@127.0.0.1:{free_port()}//"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broker amqp://guest:***@127.0.0.1:"), lines
    assert "secret" not in out.stderr


def queues_json() -> dict[str, dict[str, Any]]:
    out = cli("queues", "--json", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return {d["queue"]: d for d in json.loads(out.stdout)}


def test_queues_reports_depth_and_consumers_from_the_broker(broker: Broker, celery_worker_factory):
    queue = app.amqp.queues["cap.demo"]
    with Connection(broker.url) as conn:
        with conn.Producer(serializer="json") as producer:
            for i in range(3):  # not tasks: plain messages nobody consumes yet
                producer.publish(
                    {"n": i}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
                )
        waiting = queues_json()["cap.demo"]
        assert (waiting["depth"], waiting["consumers"]) == (3, 0)
        assert "demo.fetch_order" in waiting["tasks"]
        text = cli("queues").stdout
        assert "cap.demo" in text and "depth=3" in text and "consumers=0" in text

        queue.bind(conn.default_channel).purge()
    celery_worker_factory(queues=QUEUES, concurrency=1)
    deadline = time.monotonic() + 30
    while True:
        served = queues_json()["cap.demo"]
        if (served["depth"], served["consumers"]) == (0, 1) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (served["depth"], served["consumers"]) == (0, 1)


def test_queues_on_a_broker_that_does_not_answer_says_so_in_one_line(broker: Broker) -> None:
    port = free_port()
    dead = (
        f"redis://:secret@127.0.0.1:{port}/0"
        if broker.name == "redis"
        else f"amqp://u:secret@127.0.0.1:{port}//"
    )
    out = cli("queues", env={"CANVASFLOW_BROKER_URL": dead}, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: broker ") and ":***@127.0.0.1:" in lines[0], lines
    assert "secret" not in out.stderr and "Traceback" not in out.stderr


def test_the_app_publishes_with_the_brokers_own_options(broker: Broker) -> None:
    queue = app.amqp.queues["cap.demo"]
    with app.producer_or_acquire() as producer:
        producer.publish(
            {"probe": True}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
        )
        if broker.name == "amqp":  # publisher confirms: RabbitMQ acknowledged the message
            assert producer.channel._confirm_selected
            assert "visibility_timeout" not in app.conf.broker_transport_options
        else:
            assert app.conf.broker_transport_options["visibility_timeout"] == 10  # the harness's
    with Connection(broker.url) as conn:
        assert queue.bind(conn.default_channel).purge() == 1
