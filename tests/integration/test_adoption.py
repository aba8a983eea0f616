"""canvasflow used from a project of its own: its own Celery app (``init_app``), workflow
modules found from the working directory, fleets named after their capability that import
only their own modules. Each project lives in a temporary directory and its workers are
started the way a user starts them (``celery -A project`` or the ``canvasflow`` CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from canvasflow.config.celery_app import app
from canvasflow.workers.fleet import worker_command
from canvasflow.workflows.client import Run
from tests.harness.plugin import HarnessSession
from tests.integration.projects import cli_worker, node, project_env, run_cli, spawn, token, write_project

pytestmark = [pytest.mark.redis, pytest.mark.worker]

SHOP = '''
    """An existing Celery project: its own app, route and task; canvasflow then adopts the app."""
    from celery import Celery, chain

    import canvasflow
    from canvasflow import Workflow, step

    app = Celery("shop")
    app.conf.task_routes = {{"shop.legacy": {{"queue": "shop.legacy"}}}}


    @app.task(name="shop.legacy")
    def legacy(x: int) -> int:
        return x + 1


    canvasflow.init_app(app)


    @step(name="shop.double", capability="{cap}")
    def double(x: int) -> int:
        return 2 * x


    def _flow(x: int) -> object:
        return chain(double.s(x), double.s())


    Workflow("{flow}", version="1", build=_flow)
'''

INTROSPECT = """
import json, celery, canvasflow, shop
from canvasflow.workers.step import StepTask
a = shop.app
print(json.dumps({
    "current": celery.current_app.main, "canvasflow_current": canvasflow.current_app().main,
    "routes": repr(a.conf.task_routes), "queues": sorted(q.name for q in a.conf.task_queues),
    "tasks": sorted(n for n in a.tasks if n.startswith(("shop.", "canvasflow."))),
    "step_app": shop.double.app.main, "serializer": a.conf.task_serializer,
    "accept": list(a.conf.accept_content), "acks_late": a.tasks["shop.double"].acks_late,
    "reject_on_worker_lost": a.tasks["shop.double"].reject_on_worker_lost,
    "app_acks_late": a.conf.task_acks_late, "imports": list(a.conf.imports),
    "start_queue": a.amqp.router.route({}, "canvasflow.start")["queue"].name,
}))
"""


def _shop(tmp_path: Path) -> tuple[Path, str, str]:
    cap, flow = f"shop{token()}", f"shop_flow_{token()}"
    write_project(tmp_path, {"shop.py": SHOP.format(cap=cap, flow=flow)})
    return tmp_path, cap, flow


def test_init_app_keeps_the_projects_app_routes_and_tasks(tmp_path: Path) -> None:
    project, _, _ = _shop(tmp_path)
    out = subprocess.run(
        [sys.executable, "-P", "-c", INTROSPECT],
        cwd=project,
        env=project_env({"PYTHONPATH": f"{project}:{Path(__file__).resolve().parents[2]}"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, Any] = json.loads(out.stdout)
    assert seen["current"] == seen["canvasflow_current"] == seen["step_app"] == "shop"  # still the default
    assert "shop.legacy" in seen["routes"] and "canvasflow.start" in seen["routes"]
    assert {"shop.legacy", "shop.double", "canvasflow.start", "canvasflow.step_failed"} <= set(seen["tasks"])
    assert {"celery", "canvasflow.control"} <= set(seen["queues"])  # its default queue kept
    assert seen["start_queue"] == "canvasflow.control"
    assert seen["serializer"] == "json" and "json" in seen["accept"]
    assert seen["acks_late"] is True and seen["reject_on_worker_lost"] is True
    assert seen["app_acks_late"] is False  # the project's other tasks keep their policy
    assert "canvasflow.workflows.tasks" in seen["imports"]


def test_a_workflow_runs_on_the_projects_own_app(tmp_path: Path, canvasflow_session: HarnessSession) -> None:
    """``celery -A shop worker``: the project's app runs its own task and canvasflow's steps."""
    project, cap, flow = _shop(tmp_path)
    hostname = f"shop-{token()}@canvasflow-test"
    command = worker_command(
        ["shop.legacy", f"cap.{cap}", "celery", "canvasflow.control"],
        app="shop",
        hostname=hostname,
        concurrency=1,
    )
    worker = spawn(
        command,
        cwd=project,
        env=project_env({"CANVASFLOW_WORKFLOW_MODULES": '["shop"]'}),
        log_dir=canvasflow_session.log_dir,
        hostname=hostname,
    )
    try:
        worker.wait_ready(60)
        assert app.send_task("shop.legacy", args=[1], queue="shop.legacy").get(timeout=30) == 2
        # started by a plain message (routed to the control queue), as a service would
        reply = app.send_task("canvasflow.start", kwargs={"workflow": flow, "inputs": {"x": 3}}).get(
            timeout=30
        )
        record = Run(reply["run_id"]).wait(60)
        assert (record.status, record.result) == ("succeeded", 12)
        assert {s.worker for s in record.steps} == {hostname}
        # the CLI on the project's app, found as celery -A finds it
        out = run_cli(
            ["-A", "shop", "start", flow, "--input", '{"x": 5}', "--wait", "--json"],
            cwd=project,
            env=project_env({"CANVASFLOW_WORKFLOW_MODULES": '["shop"]'}),
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert (json.loads(out.stdout)["status"], json.loads(out.stdout)["result"]) == ("succeeded", 20)
    finally:
        worker.stop()


FLEET_MODULE = '''
    """Capability {cap}'s steps; importing this module leaves a line in the marker file."""
    import os

    from canvasflow import step

    with open({marker!r}, "a") as marker:
        marker.write("{cap} %d\\n" % os.getpid())


    @step(name="{cap}.work", capability="{cap}")
    def work(x: int) -> int:
        return x * {factor}
'''


def test_fleets_are_named_after_their_capability_and_import_only_their_modules(
    tmp_path: Path, canvasflow_session: HarnessSession
) -> None:
    a, b = f"capa{token()}", f"capb{token()}"
    marker = tmp_path / "imported.txt"
    write_project(
        tmp_path,
        {
            "fleet_a.py": FLEET_MODULE.format(cap=a, marker=str(marker), factor=10),
            "fleet_b.py": FLEET_MODULE.format(cap=b, marker=str(marker), factor=100),
        },
    )
    env = project_env({"CANVASFLOW_CAPABILITY_MODULES": json.dumps({a: ["fleet_a"], b: ["fleet_b"]})})
    common = {"cwd": tmp_path, "env": env, "log_dir": canvasflow_session.log_dir}
    # no --hostname: the CLI names each fleet <capability>@%h; Celery's options pass through
    wa = cli_worker(
        ["--capability", a, "-P", "prefork", "-c", "1", "--max-tasks-per-child", "7", "-l", "WARNING"],
        hostname=node(a),
        **common,
    )
    wb = cli_worker(
        ["--capability", b, "--pool", "prefork", "--autoscale", "2,1"], hostname=node(b), **common
    )
    try:
        wa.wait_ready(60)
        wb.wait_ready(60)
        names = {name for reply in app.control.ping(timeout=2) for name in reply}
        assert {node(a), node(b)} <= names

        stats = app.control.inspect(destination=[node(a), node(b)], timeout=5).stats()
        assert stats[node(a)]["pool"]["max-concurrency"] == 1
        assert stats[node(a)]["pool"]["max-tasks-per-child"] == 7
        assert stats[node(b)]["autoscaler"]["max"] == 2

        registered = app.control.inspect(destination=[node(a), node(b)], timeout=5).registered()
        assert f"{a}.work" in registered[node(a)] and f"{b}.work" not in registered[node(a)]
        assert f"{b}.work" in registered[node(b)] and f"{a}.work" not in registered[node(b)]
        for tasks in (registered[node(a)], registered[node(b)]):  # the demo only where asked
            assert not [t for t in tasks if t.startswith("demo.")]
            assert "canvasflow.start" in tasks

        imported = set(marker.read_text().split("\n")) - {""}
        assert imported == {f"{a} {wa.pid}", f"{b} {wb.pid}"}  # each fleet, its own module, once

        assert app.send_task(f"{a}.work", args=[2], queue=f"cap.{a}").get(timeout=30) == 20
        assert app.send_task(f"{b}.work", args=[2], queue=f"cap.{b}").get(timeout=30) == 200
    finally:
        wa.stop()
        wb.stop()


HERE_FLOWS = '''
    """Workflows of a project the CLI is run from."""
    from celery import chain

    from canvasflow import Workflow, step


    @step(name="here.inc", capability="here")
    def inc(x: int) -> int:
        return x + 1


    def _twice(x: int) -> object:
        return chain(inc.s(x), inc.s())


    Workflow("{flow}", version="1", build=_twice)
'''


def test_the_cli_finds_workflow_modules_from_the_working_directory(tmp_path: Path) -> None:
    flow = f"here_{token()}"
    project = write_project(tmp_path / "project", {"here_flows.py": HERE_FLOWS.format(flow=flow)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def listed(cwd: Path, args: list[str], modules: str) -> list[str]:
        out = run_cli(args, cwd=cwd, env=project_env({"CANVASFLOW_WORKFLOW_MODULES": modules}))
        assert out.returncode == 0, out.stdout + out.stderr
        return [w["name"] for w in json.loads(out.stdout)]

    assert flow in listed(project, ["workflows", "--json"], '["here_flows"]')  # the setting
    # --workflows overrides the setting, before or after the command
    assert flow in listed(project, ["--workflows", "here_flows", "workflows", "--json"], '["nowhere_x"]')
    assert flow in listed(project, ["workflows", "--workflows", "here_flows", "--json"], '["nowhere_x"]')
    out = run_cli(
        ["workflows"], cwd=elsewhere, env=project_env({"CANVASFLOW_WORKFLOW_MODULES": '["here_flows"]'})
    )
    assert out.returncode == 2
    assert "here_flows" in out.stderr and "working directory" in out.stderr
