"""Fuzz (Hypothesis): random bytes and random JSON at the coordinator task, at
``canvasflow start --input`` and at a step queue's message body and headers. Every case ends
in a clear refusal or a dead letter: never a crashed worker, a stuck run or a half-created run."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection

from canvasflow.config import deadletters
from canvasflow.config.celery_app import app
from canvasflow.config.errors import StartRefused
from canvasflow.workflows import get_run, list_runs, start
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.wire import header_problem
from canvasflow.workflows.tasks import start_workflow
from tests.harness.plugin import StartWorker
from tests.integration.badinput_steps import simple

pytestmark = [pytest.mark.redis]
MODULES = json.dumps(
    [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.badinput_steps"]
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
names = st.sampled_from([simple.name, "order_total", "no.such.flow", ""]) | st.text(max_size=20)


def run_count() -> int:
    return len(list_runs(limit=100_000))


@FAST
@given(workflow=names | json_values, inputs=json_values, extra=st.lists(json_values, max_size=3))
def test_the_coordinator_task_refuses_or_starts(workflow: Any, inputs: Any, extra: list[Any]) -> None:
    before = run_count()
    try:
        reply = start_workflow(workflow, inputs, *extra)
    except StartRefused as exc:
        assert str(exc).startswith("canvasflow.start refused: ")
        assert run_count() == before, "a refused start created a run"
        return
    except TypeError as exc:  # more arguments than the task takes: Celery fails the task the same way
        assert len(extra) > 3 - 1 and "positional argument" in str(exc)
        return
    assert get_run(reply["run_id"]).workflow == workflow and run_count() == before + 1


@FAST
@given(
    text=st.text(max_size=60) | json_values.map(json.dumps), name=names.filter(lambda n: n and n[0] != "-")
)
def test_start_input_refuses_or_starts(text: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = run_count()
    status = main(
        ["start", name, "--input", text, "--json"]  # no --workflows: it would rewrite the session's env
    )
    out = capsys.readouterr().out
    data = json.loads(out)
    if status == 2:
        assert set(data) == {"error", "type"} and run_count() == before
    else:
        assert status == 0 and data["workflow"] == name and run_count() == before + 1


bodies = (
    st.binary(max_size=120)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.tuples(
        st.lists(json_values, max_size=3), st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    ).map(lambda t: json.dumps([t[0], t[1], {}]).encode())
)


def refs(run_id: str) -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(
        {
            "run": st.just(run_id) | st.text(max_size=10) | json_values,
            "step": st.sampled_from(["0.add", "1.echo", "9.nope"]) | st.text(max_size=8),
            "gen": st.integers(-2, 5) | json_values,
        }
    )
    return fields | json_values.filter(lambda v: v is not None)


@pytest.mark.worker
def test_step_queue_survives_random_messages(celery_worker_factory: StartWorker) -> None:
    worker = celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES})
    done = start(simple.name, {"x": 1}).wait(60)
    assert done.status == "succeeded"
    before = len(deadletters.recent(100_000))
    sent: list[tuple[bytes, str, Any]] = []

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=bodies, ref=refs(done.id), content_type=st.sampled_from(["application/json", "text/plain"]))
    def publish(body: bytes, ref: Any, content_type: str) -> None:
        headers = {"lang": "py", "task": "demo.add", "id": uuid.uuid4().hex, "canvasflow": ref}
        with Connection(app.conf.broker_url) as conn:
            conn.Producer().publish(
                body,
                routing_key="cap.demo",
                exchange="",
                content_type=content_type,
                content_encoding="utf-8",
                headers=headers,
            )
        sent.append((body, content_type, ref))

    publish()
    broker = redis.Redis.from_url(app.conf.broker_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (broker.llen("cap.demo") or _unacked(broker, "cap.demo")):
        time.sleep(0.3)
    left = _unacked(broker, "cap.demo")
    assert broker.llen("cap.demo") == 0 and not left, f"messages left unacknowledged: {left}"
    assert worker.alive, worker.log_tail()
    letters = deadletters.recent(100_000)[: len(deadletters.recent(100_000)) - before]
    wire = [d for d in letters if d["reason"].startswith(WIRE_REASONS)]
    kinds = [kind(body, content_type, ref, done.id) for body, content_type, ref in sent]
    assert kinds.count("wire") > 5 and kinds.count("header") > 5, kinds  # the fuzz reached both layers
    assert len(wire) >= kinds.count("wire"), (len(wire), kinds.count("wire"))
    assert len(letters) - len(wire) >= kinds.count("header"), (letters, kinds)
    assert len(letters) <= len(sent)
    assert get_run(done.id).status == "succeeded" and get_run(done.id).result == [3]  # nothing changed
    again = start(simple.name, {"x": 2}).wait(60)  # and the worker keeps serving
    assert (again.status, again.result) == ("succeeded", [4])


def _unacked(broker: redis.Redis, queue: str) -> list[Any]:
    """The messages of ``queue`` the Redis transport holds as delivered and not acknowledged (its
    ``unacked`` hash: delivery tag -> [message, exchange, routing key]); other queues' entries,
    e.g. a step an earlier test's killed worker held, are not this test's."""
    entries = [json.loads(raw) for raw in broker.hvals("unacked")]
    return [message for message, _, routing_key in entries if routing_key == queue]


WIRE_REASONS = ("undecodable body", "refused content", "malformed task message", "not a Celery")


def kind(body: bytes, content_type: str, ref: Any, run_id: str) -> str:
    """``wire``: Celery cannot decode it; ``header``: a task message whose canvasflow header is
    malformed, names another run or a future generation; ``ok``: a stale or duplicate delivery."""
    try:
        value = json.loads(body.decode())
    except ValueError:
        return "wire"
    if content_type != "application/json":
        return "wire"
    shaped = isinstance(value, list) and len(value) == 3 and isinstance(value[0], list)
    if not (shaped and isinstance(value[1], dict) and isinstance(value[2], dict)):
        return "other"  # dead-lettered by the consumer, or a plain task failure: either is a refusal
    if header_problem(ref) or ref["run"] != run_id or ref["gen"] > 1:
        return "header"
    return "ok"
