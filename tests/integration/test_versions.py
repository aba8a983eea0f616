"""Moving runs in flight to a new version of their workflow, on real workers: ``versions check``
says run by run what would happen, ``migrate`` (and ``resume --to-version``) moves a compatible
run keeping its completed steps, and refuses an incompatible one naming the step."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from celery import chain

from canvasflow.config.errors import UpgradeRefused
from canvasflow.workers.demo import add, fail, sleep
from canvasflow.workflows import Workflow, check_versions, get_run, migrate, resume, signal, start
from canvasflow.workflows.authoring.patterns import wait_signal
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.context import runtime
from tests.integration.sagacheck import finished

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def generations(record, step_id):
    return [a["generation"] for a in record.step(step_id).attempt_log]


def versions(name, *builds):
    return [Workflow(name, str(i + 1), build=b) for i, b in enumerate(builds)]


def test_a_failed_run_moves_to_a_fixed_version_keeping_its_completed_steps(worker, capsys):
    name = f"t.versions.{uuid.uuid4().hex[:8]}"
    versions(
        name,
        lambda: chain(add.s(1, 1), add.s(2), fail.s()),
        lambda: chain(add.s(1, 1), add.s(2), add.s(3)),  # the fix: the last step adds 3
        lambda: chain(add.s(1, 1), add.s(20), add.s(3)),  # another argument for a completed step
    )
    failed = start(name, version="1").wait(60)
    assert failed.status == "failed" and failed.step("1.add").result == 4

    assert main(["versions", "check", name, "--to", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (plan,) = [r for r in report["runs"] if r["run_id"] == failed.id]
    assert plan["compatible"] and plan["kept"] == ["0.add", "1.add"]
    assert plan["added"] == ["2.add"] and plan["skipped"] == ["2.fail"] and plan["rerun"] == []

    assert main(["versions", "check", name, "--to", "2"]) == 0
    text = capsys.readouterr().out
    assert f"{failed.id}  failed     1 -> 2  can move" in text
    assert "kept (not run again): 0.add, 1.add" in text and "skipped (not in 2): 2.fail" in text
    assert main(["versions", "check", name, "--to", "3"]) == 0
    assert f"{failed.id}  failed     1 -> 3  cannot move: step 1.add does not map" in capsys.readouterr().out

    (bad,) = [p for p in check_versions(name, "3") if p.run_id == failed.id]
    assert not bad.compatible and bad.first_mismatch.step_id == "1.add"
    assert main(["migrate", failed.id, "--to-version", "3"]) == 2
    assert "step 1.add does not map" in capsys.readouterr().err
    with pytest.raises(UpgradeRefused, match=r"step 1\.add does not map .*other arguments"):
        migrate(failed.id, "3")
    assert get_run(failed.id).version == "1" and get_run(failed.id).generation == 1  # untouched

    moved = resume(failed.id, to_version="2").wait(60)
    assert moved.status == "succeeded" and moved.version == "2" and moved.result == 7
    assert generations(moved, "0.add") == [1] and generations(moved, "1.add") == [1]  # not run again
    assert generations(moved, "2.add") == [2]
    assert moved.step("2.fail").status == "skipped"


def test_a_run_waiting_for_a_signal_moves_and_still_takes_the_signal(worker):
    name = f"t.versions.sig.{uuid.uuid4().hex[:8]}"
    versions(
        name,
        lambda: chain(add.s(1, 1), wait_signal("approved"), add.s(5)),
        lambda: chain(add.s(1, 1), wait_signal("approved"), add.s(5), add.s(100)),
    )
    run = start(name, version="1")
    waiting = run.wait(30)
    assert waiting.status == "waiting"
    (plan,) = [p for p in check_versions(name, "2") if p.run_id == run.id]
    assert plan.compatible and plan.status == "waiting"
    assert plan.kept == ["0.add"] and plan.rerun == ["1.wait_signal", "2.add"] and plan.added == ["3.add"]

    migrate(run.id, "2")
    deadline = time.monotonic() + 20
    while (record := get_run(run.id)).status != "waiting":
        assert time.monotonic() < deadline, record.status
        time.sleep(0.05)
    assert record.version == "2" and record.generation == 2
    rt = runtime()  # the cancel before the move set the run's keys to expire; active again, they stay
    assert (
        rt.redis.ttl(rt.state.key(run.id, "meta")) == -1 and rt.redis.ttl(rt.state.key(run.id, "res")) == -1
    )
    signal(run.id, "approved", 10)
    done = finished(run.id)
    assert done.status == "succeeded" and done.result == 115
    assert generations(done, "0.add") == [1] and generations(done, "3.add") == [2]


def test_a_run_with_a_step_running_is_refused_until_it_finished(worker):
    name = f"t.versions.busy.{uuid.uuid4().hex[:8]}"
    versions(
        name,
        lambda: chain(sleep.s(2), add.s(1)),
        lambda: chain(sleep.s(2), add.s(1), add.s(1)),
    )
    run = start(name, version="1")
    deadline = time.monotonic() + 20
    while get_run(run.id).step("0.sleep").status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(UpgradeRefused, match=r"has steps running \(0\.sleep\)"):
        migrate(run.id, "2")
    assert finished(run.id).status == "succeeded" and get_run(run.id).version == "1"
    with pytest.raises(UpgradeRefused, match="only active, failed and cancelled runs move"):
        migrate(run.id, "2")
