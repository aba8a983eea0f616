"""start_many: a batch of runs started at once, with start's refusals (all or nothing) and keys."""

from __future__ import annotations

import gc
import uuid

import pytest
from celery import chain

from canvasflow import current_app, start_many
from canvasflow.config.brokers import queue_stats
from canvasflow.config.errors import InputError, WorkflowNotFound
from canvasflow.config.settings import get_settings
from canvasflow.workflows import Workflow, list_runs
from canvasflow.workflows.runtime.context import runtime
from tests.integration import reach_flows
from tests.integration.saga import act, effects

pytestmark = [pytest.mark.redis, pytest.mark.worker]

two_steps = Workflow(
    "tests.batched",
    "1",
    build=lambda log: chain(act.s(label="a", log=log), act.s(label="b", log=log)),
)


def test_every_run_of_a_batch_runs_to_the_end(worker):
    logs = [f"log-{uuid.uuid4().hex}" for _ in range(20)]
    runs = start_many(two_steps.name, [{"log": log} for log in logs], tags=["batch"])
    assert len({r.id for r in runs}) == 20
    for run, log in zip(runs, logs, strict=True):
        record = run.wait(30)
        assert record.status == "succeeded" and record.tags == ["batch"] and record.inputs == {"log": log}
        assert effects(log) == ["do:a", "do:b"]


def test_one_bad_input_refuses_the_whole_batch_and_names_it(worker):
    tag = f"refused-{uuid.uuid4().hex[:8]}"
    good = {"log": f"log-{uuid.uuid4().hex}"}
    with pytest.raises(InputError) as caught:
        start_many(two_steps.name, [good, {"nolog": 1}, good, "not json"], tags=[tag])
    message = str(caught.value)
    assert "2 of 4 inputs refused, nothing was started" in message
    assert "input 1: " in message and "input 3: " in message and "input 0" not in message
    assert list_runs(tags=[tag]) == [] and effects(good["log"]) == []
    with pytest.raises(WorkflowNotFound):
        start_many("tests.nobody", [good])
    with pytest.raises(InputError, match="2 keys for 1 inputs"):
        start_many(two_steps.name, [good], keys=["a", "b"])


def test_keys_make_each_start_of_a_batch_idempotent(worker):
    log = f"log-{uuid.uuid4().hex}"
    held, fresh = f"order-{uuid.uuid4().hex[:8]}", f"order-{uuid.uuid4().hex[:8]}"
    (first,) = start_many(two_steps.name, [{"log": log}], keys=[held])
    runs = start_many(two_steps.name, [{"log": log}] * 4, keys=[held, fresh, fresh, None])
    assert runs[0].id == first.id and runs[1].id == runs[2].id and runs[3].id not in (first.id, runs[1].id)
    for run in (first, runs[1], runs[3]):
        assert run.wait(30).status == "succeeded"
    assert sorted(effects(log)) == ["do:a"] * 3 + ["do:b"] * 3  # three runs, not five
    created = [e["event"] for e in runtime().store.events(runs[1].id)].count("run.created")
    assert created == 1


def test_a_key_held_by_another_workflows_run_refuses_the_batch(worker):
    key = f"order-{uuid.uuid4().hex[:8]}"
    start_many("tests.child", [{"x": 1}], keys=[key])[0].wait(30)
    log = f"log-{uuid.uuid4().hex}"
    with pytest.raises(InputError, match=r"input 1: key .* held by a run of workflow 'tests.child'"):
        start_many(two_steps.name, [{"log": log}, {"log": log}], keys=[None, key])
    assert effects(log) == []


def test_a_batch_with_a_too_large_input_or_an_unknown_capability_starts_nothing(worker):
    tag = f"refused-{uuid.uuid4().hex[:8]}"
    good = {"log": f"log-{uuid.uuid4().hex}"}
    big = {"log": "x" * (get_settings().max_payload_bytes + 10)}
    with pytest.raises(InputError, match=r"1 of 2 inputs refused, nothing was started: input 1: "):
        start_many(two_steps.name, [good, big], tags=[tag])
    before = len(list_runs(limit=1000))
    with pytest.raises(InputError, match=f"input 0: .*capability '{reach_flows.LONELY}'"):
        start_many("reach.direct", [{}], tags=[tag])
    assert len(list_runs(limit=1000)) == before and list_runs(tags=[tag]) == []
    assert queue_stats(current_app(), [f"cap.{reach_flows.LONELY}"])[0].depth == 0
    assert effects(good["log"]) == []
    assert gc.isenabled()  # the collector paused for the batch is back


def test_runs_of_a_batch_whose_canvases_differ_get_each_its_own_graph(worker):
    log = f"log-{uuid.uuid4().hex}"
    lengths = [1, 3, 1, 2, 3]
    runs = start_many(by_length.name, [{"n": n, "log": log} for n in lengths])
    for run, n in zip(runs, lengths, strict=True):
        record = run.wait(30)
        assert record.status == "succeeded" and len(record.steps) == n
    assert sorted(effects(log)) == sorted(f"do:{i}" for n in lengths for i in range(n))
    assert gc.isenabled()


by_length = Workflow(
    "tests.batched_by_length",
    "1",
    build=lambda n, log: chain(*(act.s(label=str(i), log=log) for i in range(n))),
)
