"""Start by business key (idempotent, also when racing) and find runs by key, tag and time."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import chain

from canvasflow.config.celery_app import app
from canvasflow.config.errors import InputError
from canvasflow.config.settings import get_settings
from canvasflow.workflows import Workflow, list_runs, start
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.context import runtime
from tests.integration.saga import act, effects

pytestmark = [pytest.mark.redis, pytest.mark.worker]

two_steps = Workflow(
    "tests.keyed",
    "1",
    build=lambda log: chain(act.s(label="a", log=log), act.s(label="b", log=log)),
)


def test_racing_starts_with_one_key_make_one_run(worker):
    key, log = f"order-{uuid.uuid4().hex[:8]}", f"log-{uuid.uuid4().hex}"
    barrier = threading.Barrier(6)
    ids: list[str] = []

    def race() -> None:
        barrier.wait()
        ids.append(start(two_steps.name, {"log": log}, key=key).id)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    record = start(two_steps.name, {"log": log}, key=key).wait(30)
    assert record.id == ids[0] and record.status == "succeeded" and record.key == key
    assert [r.id for r in list_runs(key=key)] == [record.id]
    assert effects(log) == ["do:a", "do:b"]  # one set of dispatched steps
    events = runtime().store.events(record.id)
    assert [e["event"] for e in events].count("run.created") == 1


def test_a_second_start_returns_the_first_run_whatever_its_inputs(worker):
    key, log = f"order-{uuid.uuid4().hex[:8]}", f"log-{uuid.uuid4().hex}"
    first = start(two_steps.name, {"log": log}, key=key, tags=["shop"])
    first.wait(30)
    again = start(two_steps.name, {"log": "another-log"}, key=key)
    assert again.id == first.id
    assert effects("another-log") == []
    with pytest.raises(InputError, match=f"held by run {first.id} of workflow 'tests.keyed'"):
        start("tests.child", {"x": 1}, key=key)


def test_the_start_message_takes_a_key_and_tags(worker):
    key = f"order-{uuid.uuid4().hex[:8]}"  # tests.child: a workflow the workers import
    kwargs = {"workflow": "tests.child", "inputs": {"x": 1}, "key": key, "tags": ["by-message"]}
    queue = get_settings().control_queue
    first = app.send_task("canvasflow.start", kwargs=kwargs, queue=queue).get(timeout=30)
    second = app.send_task("canvasflow.start", kwargs=kwargs, queue=queue).get(timeout=30)
    assert first == second and "run_id" in first
    (record,) = list_runs(key=key)
    assert record.id == first["run_id"] and record.tags == ["by-message"]
    assert start("tests.child", {"x": 1}, key=key).wait(30).result == 102


def test_bad_keys_and_tags_are_refused_before_anything_starts():
    with pytest.raises(InputError, match="key"):
        start(two_steps.name, {"log": "x"}, key="")
    with pytest.raises(InputError, match="tags"):
        start(two_steps.name, {"log": "x"}, tags=["ok", ""])


def test_runs_are_found_by_key_tag_and_time(worker, capsys):
    tag, log = f"tenant:{uuid.uuid4().hex[:8]}", f"log-{uuid.uuid4().hex}"
    key = f"order-{uuid.uuid4().hex[:8]}"
    assert main(["start", two_steps.name, "--input", json.dumps({"log": log}), "--key", key,
                 "--tag", tag, "--tag", "vip", "--wait", "--timeout", "60", "--json"]) == 0  # fmt: skip
    started = json.loads(capsys.readouterr().out)
    other = start(two_steps.name, {"log": log}, tags=[tag])
    other.wait(30)

    def runs(*args: str) -> list[str]:
        assert main(["runs", "--json", *args]) == 0
        return [r["id"] for r in json.loads(capsys.readouterr().out)]

    assert runs("--key", key) == [started["id"]]
    assert set(runs("--tag", tag)) == {started["id"], other.id}
    assert runs("--tag", tag, "--tag", "vip") == [started["id"]]
    assert set(runs("--tag", tag, "--since", "10m")) == {started["id"], other.id}
    assert runs("--tag", tag, "--until", "10m") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert runs("--tag", tag, "--since", future) == []
    assert set(runs("--tag", tag, "--until", future)) == {started["id"], other.id}
    assert main(["runs", "--since", "yesterday"]) == 2
    assert "neither an ISO timestamp" in capsys.readouterr().err


def test_the_cli_shows_a_runs_key_and_tags(worker, capsys):
    key, log = f"order-{uuid.uuid4().hex[:8]}", f"log-{uuid.uuid4().hex}"
    run = start(two_steps.name, {"log": log}, key=key, tags=["shop", "vip"])
    run.wait(30)
    assert main(["status", run.id]) == 0
    assert f"key: {key}  tags: shop, vip" in capsys.readouterr().out
    assert main(["runs", "--key", key]) == 0
    assert f"{run.id}" in (out := capsys.readouterr().out) and f"key={key}" in out
