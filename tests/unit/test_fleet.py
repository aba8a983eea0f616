"""Fleets and apps, without a broker: what a worker imports, how it is named and started,
and what ``adopt`` adds to an existing Celery app while keeping what it had."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from celery import Celery
from kombu import Queue

from canvasflow.config.celery_app import DEMO_MODULES, RUNTIME_MODULES, adopt, app, worker_imports
from canvasflow.config.settings import get_settings, load_settings
from canvasflow.workers.fleet import default_hostname, fleet_modules, worker_args
from canvasflow.workflows.cli.main import main

MAPPED = load_settings(
    workflow_modules=["shop.flows"],
    capability_modules={"payments": ["shop.payments"], "reports": ["shop.reports", "shop.pdf"]},
)


def test_a_capability_fleet_imports_only_its_modules() -> None:
    assert fleet_modules(["payments"], MAPPED) == ["shop.payments"]
    assert fleet_modules(["payments", "reports"], MAPPED) == ["shop.payments", "shop.reports", "shop.pdf"]


def test_a_control_worker_imports_every_workflow_module_and_demo_only_when_asked() -> None:
    assert fleet_modules(["payments"], MAPPED, control=True) == ["shop.payments", "shop.flows"]
    assert fleet_modules(["payments"], MAPPED, demo=True) == ["shop.payments", *DEMO_MODULES]


def test_a_capability_without_an_entry_falls_back_to_the_workflow_modules() -> None:
    assert fleet_modules(["orders"], MAPPED) == ["shop.flows"]


def test_worker_imports_runtime_then_what_the_fleet_named_else_everything() -> None:
    assert worker_imports(MAPPED) == [
        *RUNTIME_MODULES,
        "shop.flows",
        "shop.payments",
        "shop.reports",
        "shop.pdf",
    ]
    only = load_settings(worker_modules=["shop.payments"], workflow_modules=["shop.flows"])
    assert worker_imports(only) == [*RUNTIME_MODULES, "shop.payments"]
    assert not set(DEMO_MODULES) & set(worker_imports(load_settings(workflow_modules=[])))


def test_worker_args_pass_celerys_options_through() -> None:
    args = worker_args(
        ["cap.a"], concurrency=None, pool="threads", hostname="a@%h", autoscale="4,1", max_tasks_per_child=9
    )
    assert args[:3] == ["worker", "-Q", "cap.a"]
    for pair in (["-P", "threads"], ["-n", "a@%h"], ["--autoscale", "4,1"], ["--max-tasks-per-child", "9"]):
        assert any(args[i : i + 2] == pair for i in range(len(args)))
    assert "-c" not in args  # Celery's own default when not given


def test_fleets_are_named_after_their_capabilities() -> None:
    assert default_hostname(["payments"]) == "payments@%h"
    assert default_hostname(["payments", "orders"]) == "payments-orders@%h"


def test_cli_worker_command_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["worker", "--capability", "payments,orders", "--control", "--demo", "-c", "3", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    cmd = out["command"]
    assert cmd[cmd.index("-A") + 1] == "canvasflow.app"
    assert cmd[cmd.index("-n") + 1] == "payments-orders@%h"
    assert cmd[cmd.index("-c") + 1] == "3"
    assert cmd[cmd.index("-Q") + 1].split(",")[:2] == ["cap.payments", "cap.orders"]
    assert "canvasflow.control" in cmd[cmd.index("-Q") + 1]
    assert set(DEMO_MODULES) <= set(json.loads(out["env"]["CANVASFLOW_WORKER_MODULES"]))

    assert main(["-A", "shop.celery", "worker", "--capability", "payments", "-n", "pay1@%h", "--json"]) == 0
    cmd = json.loads(capsys.readouterr().out)["command"]
    assert cmd[cmd.index("-A") + 1] == "shop.celery" and cmd[cmd.index("-n") + 1] == "pay1@%h"
    assert main(["worker", "--capability", "payments", "-A", "shop.celery", "--json"]) == 0  # after it too
    cmd = json.loads(capsys.readouterr().out)["command"]
    assert cmd[cmd.index("-A") + 1] == "shop.celery"


def test_a_plain_send_task_of_start_is_routed_to_the_control_queue() -> None:
    route = app.amqp.router.route({}, "canvasflow.start", args=(), kwargs={})
    assert route["queue"].name == load_settings().control_queue


def test_adopt_keeps_the_apps_broker_routes_and_queues() -> None:
    theirs = Celery("shop", broker="redis://elsewhere:6379/3", set_as_current=False)
    theirs.conf.task_routes = {"shop.*": {"queue": "shop"}}
    theirs.conf.accept_content = ["json", "msgpack"]
    adopt(theirs, load_settings(capabilities=["payments"]))
    assert theirs.conf.broker_url == "redis://elsewhere:6379/3"
    assert theirs.conf.task_serializer == "json" and theirs.conf.accept_content == ["json", "msgpack"]
    assert {q.name for q in theirs.conf.task_queues} == {"celery", "canvasflow.control", "cap.payments"}
    assert theirs.amqp.router.route({}, "shop.ship", args=(), kwargs={})["queue"].name == "shop"
    assert theirs.amqp.router.route({}, "canvasflow.start", args=(), kwargs={})["queue"].name == (
        "canvasflow.control"
    )
    assert theirs.conf.task_acks_late is False  # its other tasks keep their policy
    adopt(theirs, load_settings(capabilities=["payments"]))  # again: nothing doubles
    assert len(theirs.conf.task_routes) == 3 and len(theirs.conf.task_queues) == 3
    assert RUNTIME_MODULES[0] in theirs.conf.imports


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``--workflows`` sets CANVASFLOW_WORKFLOW_MODULES for the process: put it back after."""
    monkeypatch.setenv("CANVASFLOW_WORKFLOW_MODULES", os.environ.get("CANVASFLOW_WORKFLOW_MODULES", "[]"))
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_control_only_worker_is_named_control_and_imports_every_workflow_module(
    capsys: pytest.CaptureFixture[str], cli_env: None
) -> None:
    assert main(["--workflows", "shop.flows", "worker", "--control", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cmd = out["command"]
    assert cmd[cmd.index("-n") + 1] == "control@%h"
    assert cmd[cmd.index("-Q") + 1].split(",") == ["canvasflow", "canvasflow.control"]
    assert json.loads(out["env"]["CANVASFLOW_WORKER_MODULES"]) == ["shop.flows"]
    assert main(["worker", "--json"]) == 2  # neither a capability nor --control
    assert "--capability" in json.loads(capsys.readouterr().out)["error"]


def test_adopt_declares_only_canvasflows_queues_with_x_max_priority_when_asked() -> None:
    theirs = Celery("shop", broker="amqp://guest:guest@127.0.0.1:5672//", set_as_current=False)
    theirs.conf.task_queues = [Queue("shop")]
    adopt(theirs, load_settings(capabilities=["payments"], queue_max_priority=9))
    declared = {q.name: q.queue_arguments for q in theirs.conf.task_queues}
    assert declared["cap.payments"] == {"x-max-priority": 9} == declared["canvasflow.control"]
    assert not declared["shop"]  # the app's own queue is declared as it was
