"""Schedules: `canvasflow schedule` checks what it writes; a real `celery beat` (every second)
starts runs that a real worker runs; two firings for one slot start one run."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from canvasflow.config.errors import InputError, WorkflowNotFound
from canvasflow.config.settings import get_settings
from canvasflow.workflows import get_run, list_runs
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runs.schedule_beat import slot_key, start_scheduled
from canvasflow.workflows.runs.schedules import Schedule, add, load, parse_cron, parse_every, remove
from tests.harness.plugin import ROOT
from tests.harness.workers import CeleryProcess

pytestmark = pytest.mark.redis

SCHEDULER = "canvasflow.workflows.runs.schedule_beat:ScheduleFileScheduler"


@pytest.fixture
def schedules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "schedules.json"
    monkeypatch.setenv("CANVASFLOW_SCHEDULES_FILE", str(path))
    get_settings.cache_clear()
    yield path
    monkeypatch.delenv("CANVASFLOW_SCHEDULES_FILE")
    get_settings.cache_clear()


def test_timings_are_checked() -> None:
    assert str(parse_cron("*/5 * * * *")) == "<crontab: */5 * * * * (m/h/dM/MY/d)>"
    assert (parse_every("30s"), parse_every("5m"), parse_every("2")) == (30, 300, 2)
    with pytest.raises(InputError, match="must have five fields"):
        parse_cron("*/5 * * *")
    with pytest.raises(InputError, match=r"cron '61 \* \* \* \*' is not valid: Invalid end range"):
        parse_cron("61 * * * *")
    with pytest.raises(InputError, match="at least a second, like 30s"):
        parse_every("soon")


def test_one_slot_one_key() -> None:
    assert (
        slot_key("nightly", 120.2, 60)
        == slot_key("nightly", 179.9, 60)
        == "schedule:nightly:1970-01-01T00:02:00+00:00"
    )
    assert slot_key("fast", 10.9, 1) != slot_key("fast", 11.1, 1)


def test_the_cli_writes_lists_and_removes_schedules(schedules_file: Path, capsys) -> None:
    args = ["schedule", "add", "tests.child", "--name", "child-each-minute", "--cron", "* * * * *"]
    assert main([*args, "--input", '{"x": 1}', "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == {"x": 1}
    assert load(schedules_file)["child-each-minute"] == Schedule(
        "child-each-minute", "tests.child", {"x": 1}, cron="* * * * *"
    )
    assert main([*args, "--input", '{"x": 1}']) == 2
    assert "exists: remove it first, or add it with --replace" in capsys.readouterr().err
    assert main(["schedule", "list"]) == 0
    assert "child-each-minute: tests.child cron '* * * * *' inputs {\"x\": 1}" in capsys.readouterr().out
    assert main(["schedule", "remove", "child-each-minute"]) == 0
    assert load(schedules_file) == {}


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["tests.child", "--cron", "0 25 * * *"], "cron '0 25 * * *' is not valid"),
        (["tests.child", "--cron", "every minute"], "must have five fields"),
        (["no.such.workflow", "--cron", "* * * * *"], "no workflow named 'no.such.workflow'"),
        (["tests.child", "--every", "1s", "--input", '{"y": 1}'], "invalid inputs: x: Field required"),
        (["tests.child", "--every", "1s", "--cron", "* * * * *"], "give --cron or --every (one of them)"),
    ],
)
def test_schedule_add_refuses_what_could_never_start(schedules_file: Path, capsys, argv, error) -> None:
    assert main(["schedule", "add", *argv]) == 2
    assert error in capsys.readouterr().err
    assert not schedules_file.exists()


def test_adding_checks_the_workflow(schedules_file: Path) -> None:
    with pytest.raises(WorkflowNotFound):
        add(Schedule("s", "no.such.workflow", cron="* * * * *"), path=schedules_file)
    with pytest.raises(InputError, match="no schedule named 'gone'"):
        remove("gone", schedules_file)


@pytest.mark.worker
def test_two_firings_for_one_slot_start_one_run(worker) -> None:
    name = f"twice-{uuid.uuid4().hex[:6]}"
    kwargs = {
        "schedule": name,
        "workflow": "tests.child",
        "inputs": {"x": 1},
        "period": 60.0,
        "fired_at": 600.5,
    }
    first = start_scheduled.apply_async(kwargs=kwargs).get(timeout=30)
    second = start_scheduled.apply_async(kwargs={**kwargs, "fired_at": 659.0}).get(timeout=30)
    later = start_scheduled.apply_async(kwargs={**kwargs, "fired_at": 660.0}).get(timeout=30)
    assert first == second and later["run_id"] != first["run_id"]
    assert [r.key for r in list_runs(tags=[f"schedule:{name}"])] == [later["key"], first["key"]]
    refused = start_scheduled.apply_async(kwargs={**kwargs, "inputs": {}, "fired_at": 720.0})
    with pytest.raises(Exception, match="start refused: InputError"):
        refused.get(timeout=30)


@pytest.mark.worker
def test_celery_beat_starts_runs_every_second_and_two_beats_start_one_per_slot(
    worker, tmp_path: Path, canvasflow_session
) -> None:
    name = f"every-second-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "schedules.json"
    add(Schedule(name, "tests.child", {"x": 1}, every="1s"), path=path)
    env = {**canvasflow_session.env, "CANVASFLOW_SCHEDULES_FILE": str(path)}
    import os

    env = {**os.environ, **env}
    beats = [
        CeleryProcess.spawn(
            f"beat-{i}",
            ["beat", "-S", SCHEDULER, "-l", "INFO", "--pidfile", str(tmp_path / f"beat{i}.pid")],
            log_path=tmp_path / f"beat{i}.log",
            cwd=ROOT,
            env=env,
        )
        for i in range(2)
    ]
    began = time.time()
    try:
        deadline = time.monotonic() + 60
        while len(list_runs(tags=[f"schedule:{name}"])) < 4:
            assert time.monotonic() < deadline, "beat started no runs: " + beats[0].log_tail()
            assert all(b.alive for b in beats), beats[0].log_tail()
            time.sleep(0.2)
    finally:
        for b in beats:
            b.stop()
    elapsed = time.time() - began
    runs = list_runs(tags=[f"schedule:{name}"], limit=1000)
    sent = sum(b.read_log().count(f"Sending due task canvasflow:{name}") for b in beats)
    print(f"\n{len(runs)} runs in {elapsed:.1f} s from {sent} firings of two beats")
    assert len({r.key for r in runs}) == len(runs)
    assert len(runs) <= elapsed + 2  # one per one-second slot, though both beats fired in each
    assert sent > len(runs)
    for r in runs:
        assert r.workflow == "tests.child" and r.key.startswith(f"schedule:{name}:")
        deadline = time.monotonic() + 60
        while get_run(r.id).status != "succeeded":
            assert time.monotonic() < deadline, get_run(r.id)
            time.sleep(0.1)
        assert get_run(r.id).result == 102
