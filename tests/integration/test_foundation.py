"""The foundation through real processes: plain Celery canvases on a real worker, Flower
seeing them, a clear error for a broker that does not answer, task context in the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import port_for
import pytest
from celery import chain, chord, group

from canvasflow.config.celery_app import app
from canvasflow.config.settings import get_settings
from canvasflow.workers.demo import add, fetch_order, mul, xsum
from tests.harness.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


def eventually(probe: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2) -> Any:
    """``probe()``'s first truthy result within ``timeout`` seconds; the last falsy one else."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


@pytest.mark.redis
def test_session_settings_reach_the_app(redis_url: str, canvasflow_session: Any) -> None:
    s = get_settings()
    assert app.conf.broker_url == app.conf.result_backend == redis_url
    assert s.redis_state_url == redis_url
    if canvasflow_session.redis.claim is not None:  # a shared server: never database 0
        assert not redis_url.endswith("/0")
    assert s.key_prefix.startswith("cftest-")
    assert s.visibility_timeout == 10 == app.conf.broker_transport_options["visibility_timeout"]
    assert s.log_format == "json"
    assert s.database_url.startswith("sqlite:////")


@pytest.mark.redis
@pytest.mark.worker
class TestCanvasOnARealWorker:
    def test_chain(self, worker: WorkerProcess) -> None:
        assert chain(add.s(2, 2), mul.s(4), add.s(1)).apply_async().get(timeout=20) == 17

    def test_group(self, worker: WorkerProcess) -> None:
        assert group(add.s(i, i) for i in range(6)).apply_async().get(timeout=20) == [0, 2, 4, 6, 8, 10]

    def test_chord(self, worker: WorkerProcess) -> None:
        header = [add.s(i, i) for i in range(5)]
        assert chord(header, xsum.s()).apply_async().get(timeout=20) == 20

    def test_chord_of_chains_inside_a_chain(self, worker: WorkerProcess) -> None:
        canvas = chain(
            add.s(1, 1),
            chord([chain(mul.s(2), add.s(1)), mul.s(10)], xsum.s()),
            mul.s(3),
        )
        assert canvas.apply_async().get(timeout=20) == (2 * 2 + 1 + 2 * 10) * 3


@pytest.mark.redis
@pytest.mark.worker
def test_structlog_lines_inside_a_task_carry_its_id_and_name(worker: WorkerProcess) -> None:
    offset = worker.log_path.stat().st_size
    result = fetch_order.delay(41)
    assert result.get(timeout=20)["id"] == 41

    def fetched_line() -> dict[str, Any] | None:
        for line in worker.read_log(offset).splitlines():
            if line.startswith("{") and '"fetched order"' in line:
                record = json.loads(line)
                if record.get("task_id") == result.id:
                    return record
        return None

    record = eventually(fetched_line, timeout=5)
    assert record, f"no JSON 'fetched order' line for task {result.id} in {worker.log_path}"
    assert record["event"] == "fetched order"
    assert record["task_name"] == "demo.fetch_order"
    assert record["order_id"] == 41
    assert record["level"] == "info"


@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.flower
def test_flower_lists_the_tasks_that_ran(worker: WorkerProcess, flower: str) -> None:
    from tests.harness.flower import get_json

    chained = chain(add.s(1, 2), mul.s(3)).apply_async()
    grouped = group(add.s(i, 1) for i in range(3)).apply_async()
    assert chained.get(timeout=20) == 9
    assert grouped.get(timeout=20) == [1, 2, 3]
    expected = {chained.parent.id: "demo.add", chained.id: "demo.mul"}
    expected |= {r.id: "demo.add" for r in grouped.results}

    def listed() -> dict[str, Any] | None:
        tasks = get_json(f"{flower}/api/tasks?limit=1000")
        done = {tid: tasks[tid] for tid in expected if tasks.get(tid, {}).get("state") == "SUCCESS"}
        return tasks if len(done) == len(expected) else None

    tasks = eventually(listed, timeout=10)
    assert tasks, f"Flower did not list all of {sorted(expected)} as SUCCESS in time"
    for task_id, name in expected.items():
        assert tasks[task_id]["name"] == name
        assert tasks[task_id]["state"] == "SUCCESS"
        assert tasks[task_id]["worker"] == worker.hostname


CHECK_BROKER = textwrap.dedent("""
    import json, time
    from canvasflow.config.celery_app import check_broker
    from canvasflow.config.errors import BrokerUnavailable

    began = time.monotonic()
    try:
        check_broker()
    except BrokerUnavailable as exc:
        outcome = {"error": type(exc).__name__, "message": str(exc)}
    except Exception as exc:
        outcome = {"error": type(exc).__name__, "message": repr(exc)}
    else:
        outcome = {"error": None, "message": ""}
    outcome["seconds"] = time.monotonic() - began
    print(json.dumps(outcome))
""")


@pytest.mark.parametrize(("auth", "shown"), [("", ""), (":s3cret@", ":***@")], ids=["plain", "with-password"])
def test_unreachable_broker_gives_one_clear_error_naming_it(auth: str, shown: str) -> None:
    port = port_for.select_random()  # free, so nothing answers there
    url = f"redis://{auth}127.0.0.1:{port}/0"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHECK_BROKER],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CANVASFLOW_BROKER_URL": url},
    )
    wall = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "BrokerUnavailable", outcome
    assert f"redis://{shown}127.0.0.1:{port}/0" in outcome["message"]
    assert "s3cret" not in outcome["message"]
    assert outcome["seconds"] < 6, f"check_broker took {outcome['seconds']:.1f}s"
    assert wall < 15, f"the whole process took {wall:.1f}s"
