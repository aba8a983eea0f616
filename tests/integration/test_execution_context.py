"""``context()`` inside steps: ids, key, lineage of child runs, run metadata, log lines."""

from __future__ import annotations

import json

import pytest

from canvasflow import NoContext, context, start
from tests.faults.crashing import ctx_child, ctx_parent
from tests.faults.test_compensation_crashes import QUEUES, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_context_outside_a_step_says_so():
    with pytest.raises(NoContext, match="only available inside a step"):
        context()


def test_steps_see_their_run_step_key_lineage_and_shared_metadata(celery_worker_factory):
    w = celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=worker_env())
    parent, child = ctx_parent, ctx_child
    run = start(parent.name)
    record = run.wait(60)
    assert record.status == "succeeded", record.error

    first, second = record.step("0.probe").result, record.step("1.probe").result
    assert first["run_id"] == run.id and first["step_id"] == "0.probe"
    assert (first["generation"], first["attempt"]) == (1, 1)
    assert first["key"] == f"{run.id}:0.probe:1"
    assert (first["workflow"], first["version"]) == (parent.name, "2")
    assert first["queue"] == "cap.demo" and first["worker"] == w.hostname
    assert first["lineage"] == [[run.id, "0.probe"]] and first["parent_run_id"] is None
    # the run's metadata map is shared: the second step sees what the first wrote
    assert second["metadata_before"] == {"seen_by_0.probe": "first"}

    inner = record.result  # the child run's probe result is the parent's result
    assert inner["workflow"] == child.name and inner["version"] == "3"
    assert inner["parent_run_id"] == run.id and inner["parent_step"] == "2.subworkflow"
    assert inner["lineage"] == [[run.id, "2.subworkflow"], [inner["run_id"], inner["step_id"]]]
    assert inner["key"] == f"{inner['run_id']}:{inner['step_id']}:1"

    lines = [json.loads(x) for x in w.read_log().splitlines() if x.startswith("{") and "probe ran" in x]
    logged = {line["note"]: line for line in lines}
    assert logged["first"]["run_id"] == run.id and logged["first"]["step_id"] == "0.probe"
    assert logged["first"]["idempotency_key"] == f"{run.id}:0.probe:1"
    assert logged["first"]["attempt"] == 1 and logged["first"]["generation"] == 1
