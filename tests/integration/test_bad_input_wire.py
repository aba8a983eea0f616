"""Bad messages on the wire: refused, dead-lettered, acknowledged; the worker keeps serving.

Also: a refused ``canvasflow.start`` is a task FAILURE the sender, the result backend and
Flower see; an exception Celery cannot rebuild keeps its type in the journal; payloads over
CANVASFLOW_MAX_PAYLOAD_BYTES are refused, and 50 MB travel by reference (canvasflow.blobs)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import chain
from kombu import Connection

from canvasflow.config.celery_app import app
from canvasflow.config.errors import PayloadTooLarge, StartRefused
from canvasflow.workflows import Workflow, list_runs, start
from tests.harness.plugin import ROOT, StartWorker
from tests.harness.workers import WorkerProcess
from tests.integration.badinput_steps import big, big_result, blob_flow, pay, simple, unrebuildable_flow
from tests.integration.saga import effects
from tests.integration.sagacheck import new_log, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker]
MODULES = json.dumps(
    [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.badinput_steps"]
)


@pytest.fixture
def bi_worker(celery_worker_factory: StartWorker) -> WorkerProcess:
    """A worker that also imports the bad-input tests' steps."""
    return celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES})


def eventually(probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.2)


def deadletters() -> list[dict[str, Any]]:
    """What ``canvasflow deadletters --json`` prints (the real command)."""
    out = subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", "deadletters", "--json", "--limit", "1000"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    letters: list[dict[str, Any]] = json.loads(out.stdout)
    return letters


class Evil:
    """Unpickling this would create ``marker``: proof that a pickle message was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def publish(body: bytes, content_type: str, headers: dict[str, Any], queue: str = "cap.demo") -> None:
    with Connection(app.conf.broker_url) as conn:
        conn.Producer().publish(
            body,
            routing_key=queue,
            exchange="",
            content_type=content_type,
            content_encoding="binary" if "pickle" in content_type else "utf-8",
            headers=headers,
        )


def celery_headers(task: str = "demo.add", **extra: Any) -> dict[str, Any]:
    return {"lang": "py", "task": task, "id": uuid.uuid4().hex, "root_id": None, "parent_id": None, **extra}


@pytest.mark.flower
def test_a_refused_start_is_a_failure_the_sender_and_flower_see(
    bi_worker: WorkerProcess, flower: str
) -> None:
    from tests.harness.flower import get_json

    offset = len(bi_worker.read_log())
    unknown = app.send_task("canvasflow.start", kwargs={"workflow": "no.such.flow", "inputs": {}})
    with pytest.raises(StartRefused, match=r"WorkflowNotFound: no workflow named 'no\.such\.flow'"):
        unknown.get(timeout=60)
    with pytest.raises(StartRefused, match="inputs must be a JSON object"):
        app.send_task("canvasflow.start", kwargs={"workflow": simple.name, "inputs": [1, 2]}).get(timeout=60)
    with pytest.raises(StartRefused, match="workflow must be a workflow name"):
        app.send_task("canvasflow.start", args=[42]).get(timeout=60)
    with pytest.raises(StartRefused, match=r"InputError: .*x"):
        app.send_task("canvasflow.start", args=[simple.name, {"x": "one"}]).get(timeout=60)
    assert app.AsyncResult(unknown.id).state == "FAILURE"  # in the result backend
    assert not list_runs(workflow="no.such.flow")

    def shown() -> dict[str, Any] | None:
        task = get_json(f"{flower}/api/tasks?limit=1000").get(unknown.id) or {}
        return task if task.get("state") == "FAILURE" else None

    task = eventually(shown)
    assert task, "Flower did not show the refused start as FAILURE"
    assert "StartRefused" in task["exception"] and "no.such.flow" in task["exception"]
    log = bi_worker.read_log(offset)
    warnings = [json.loads(line) for line in log.splitlines() if '"start refused"' in line]
    assert warnings and {w["level"] for w in warnings} == {"warning"}, log[-3000:]
    assert "Traceback" not in log


def test_pickle_and_malformed_step_messages_are_dead_lettered(
    bi_worker: WorkerProcess, tmp_path: Path
) -> None:
    done = start(simple.name, {"x": 1}).wait(60)
    assert done.status == "succeeded"
    marker = tmp_path / "pickle-ran"
    ref = {"run": done.id, "step": "0.add", "gen": 1}
    before = len(deadletters())
    publish(pickle.dumps(Evil(marker)), "application/x-python-serialize", celery_headers(canvasflow=ref))
    publish(b'[[1, 2], {}, {"callbacks"', "application/json", celery_headers(canvasflow=ref))
    publish(b"[[1, 2], {}, {}]", "application/json", celery_headers("no.such.task"))
    bad_refs = {
        "canvasflow header field 'gen'": {"run": done.id, "step": "0.add"},
        "canvasflow header is not an object": "run-1",
        "unknown run id": {"run": "no-such-run", "step": "0.add", "gen": 1},
        "is not in run": {"run": done.id, "step": "7.nope", "gen": 1},
        "from the future": {"run": done.id, "step": "0.add", "gen": 9},
    }
    for bad in bad_refs.values():
        app.send_task("demo.add", args=[1, 2], headers={"canvasflow": bad}, queue="cap.demo")

    def letters() -> list[dict[str, Any]] | None:
        new = deadletters()[: len(deadletters()) - before]
        return new if len(new) >= 3 + len(bad_refs) else None

    new = eventually(letters, 60)
    assert new, f"dead letters: {deadletters()[:10]}"
    reasons = " | ".join(d["reason"] for d in new)
    for expected in ("refused content (ContentDisallowed", "undecodable body", "unknown task", *bad_refs):
        assert expected in reasons, (expected, reasons)
    assert not marker.exists(), "a pickle message was executed"
    assert bi_worker.alive
    again = start(simple.name, {"x": 5}).wait(60)  # the worker keeps serving
    assert (again.status, again.result) == ("succeeded", [7])
    assert get_state(done.id) == "succeeded", "a malformed message changed the run"
    broker = redis.Redis.from_url(app.conf.broker_url)
    assert eventually(lambda: broker.hlen("unacked") == 0, 30), "a refused message was not acknowledged"


def get_state(run_id: str) -> str:
    from canvasflow.workflows import get_run

    return get_run(run_id).status


def test_a_step_whose_task_the_worker_lacks_fails_saying_so_and_is_compensated(
    celery_worker_factory: StartWorker,
) -> None:
    """A worker that does not import a step's module discards its message as an unknown task
    (dead-lettered): the step fails with TaskNotRegistered naming the task and the worker, the
    completed steps are compensated, and the run ends instead of being sent again for ever."""
    w = celery_worker_factory()  # the session's modules only: not tests.integration.badinput_steps
    log = new_log()
    act = step_of(log)
    wf = Workflow(f"t.unknown.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(act("a"), big.s(10)))
    record = start(wf.name).wait(30)

    assert record.status == "compensated", (record.status, record.error)
    assert record.error["type"] == "TaskNotRegistered"
    assert "'bi.big'" in record.error["message"] and w.hostname in record.error["message"]
    assert f"canvasflow resume {record.id}" in record.error["message"]
    assert effects(log) == ["do:a", "undo:a"]
    failed = next(st for st in record.steps if st.task == "bi.big")
    assert failed.status == "failed" and failed.error["type"] == "TaskNotRegistered"
    letters = [d for d in deadletters() if d["task"] == "bi.big"]
    assert letters and "unknown task" in letters[0]["reason"]


def test_an_exception_celery_cannot_rebuild_keeps_its_type(bi_worker: WorkerProcess) -> None:
    record = start(unrebuildable_flow.name).wait(60)
    assert record.status == "failed", record
    error = record.step("1.unrebuildable").error
    assert error["type"] == "Unrebuildable" and error["module"] == "tests.integration.badinput_steps"
    assert error["message"] == "account acme-7 cannot take 42"
    assert "raise Unrebuildable" in error["traceback"]
    assert record.error["type"] == "Unrebuildable" and "UnpickleableExceptionWrapper" not in json.dumps(
        record.error
    )


def test_payloads_over_the_limit_are_refused(bi_worker: WorkerProcess) -> None:
    before = len(list_runs(workflow=simple.name, limit=1000))
    with pytest.raises(
        PayloadTooLarge, match=r"inputs of bi.simple is \d+ bytes.*CANVASFLOW_MAX_PAYLOAD_BYTES"
    ):
        start(simple.name, {"x": "y" * 2_000_000})
    assert len(list_runs(workflow=simple.name, limit=1000)) == before  # nothing was created
    record = start(big_result.name, {"size": 2_000_000}).wait(60)
    assert record.status == "failed"
    error = record.step("0.big").error
    assert error["type"] == "PayloadTooLarge" and "CANVASFLOW_MAX_PAYLOAD_BYTES" in error["message"]
    assert "blobs" in error["message"]


def test_fifty_megabytes_travel_through_a_workflow_by_reference(bi_worker: WorkerProcess) -> None:
    expected = bytes(range(256)) * (50 * 4096)
    record = start(blob_flow.name, {"megabytes": 50}).wait(180)
    assert record.status == "succeeded", record.error
    assert record.result == {"size": 50 * 1024 * 1024, "sha256": hashlib.sha256(expected).hexdigest()}
    assert record.step("0.blob_make").result.startswith("blob:")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.flower
def test_a_planted_secret_reaches_no_output_channel(bi_worker: WorkerProcess, flower: str) -> None:
    """A secret step argument from the run's inputs, and a password in a URL: grep every channel."""
    from canvasflow.config.settings import get_settings
    from tests.harness.flower import get_json

    planted = f"4111-{uuid.uuid4().hex}"
    offset = len(bi_worker.read_log())
    record = start(pay.name, {"card_number": planted, "amount": 5}).wait(60)
    assert (record.status, record.result) == ("succeeded", [{"charged": 5, "last4": planted[-4:]}])

    def charged_event() -> dict[str, Any] | None:
        tasks = get_json(f"{flower}/api/tasks?limit=1000")
        mine = [t for t in tasks.values() if t.get("name") == "bi.charge" and t.get("state") == "SUCCESS"]
        return mine[-1] if mine else None

    event = eventually(charged_event)
    assert event and "***" in str(event.get("args")), event
    channels = {
        "worker log": bi_worker.read_log(offset),
        "status --json": cli("status", record.id, "--json").stdout,
        "status": cli("status", record.id).stdout,
        "runs --json": cli("runs", "--json", "--workflow", pay.name).stdout,
        "flower (events)": json.dumps(get_json(f"{flower}/api/tasks?limit=1000")),
    }
    db = Path(get_settings().database_url.removeprefix("sqlite:///"))
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():  # read by another process: closing a file SQLite has open drops its locks
            raw = subprocess.run(["cat", str(path)], capture_output=True, timeout=60, check=True).stdout
            channels[f"journal file {path.name}"] = raw.decode("latin-1")
    assert channels["status --json"] and "***" in channels["status --json"]
    leaked = [name for name, text in channels.items() if planted in text]
    assert not leaked, f"the secret is in: {leaked}"

    password = f"pw-{uuid.uuid4().hex}"  # a URL's password: never printed, also not when it fails
    outs = [
        cli(
            "queues",
            CANVASFLOW_BROKER_URL=f"redis://:{password}@127.0.0.1:1/0",
            CANVASFLOW_BROKER_TIMEOUT="1",
        ),
        cli("runs", "--json", CANVASFLOW_DATABASE_URL=f"postgresql://ops:{password}@127.0.0.1:1/x"),
        cli("db", "current", CANVASFLOW_DATABASE_URL=f"postgresql://ops:{password}@127.0.0.1:1/x"),
    ]
    for out in outs:
        assert out.returncode == 2 and "***" in out.stdout + out.stderr, (out.stdout, out.stderr)
        assert password not in out.stdout + out.stderr
