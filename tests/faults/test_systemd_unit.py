"""deploy/systemd/canvasflow-worker@.service: systemd accepts it, it stops a worker as Kubernetes
does (SIGTERM to the main process, the warm shutdown's time), and why KillMode=mixed: SIGTERM to
every process of the worker, systemd's default, kills the running step."""

from __future__ import annotations

import configparser
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import chain

from canvasflow.config.settings import Settings
from canvasflow.workflows import Workflow, start
from tests.faults.test_killed_workers import QUEUES, running_step, wait_for
from tests.integration.saga import effects
from tests.integration.sagacheck import new_log, step_of

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "canvasflow-worker@.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  (systemd keys are case-sensitive)
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_accepts_every_line_of_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (apt-get install systemd)"
    canvasflow = Path(sys.executable).with_name("canvasflow")
    unit = tmp_path / "canvasflow-worker@payments.service"
    unit.write_text(UNIT.read_text().replace("/opt/canvasflow/venv/bin/canvasflow", str(canvasflow)))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr  # a misspelt key is reported


def test_the_unit_stops_a_worker_with_a_warm_shutdown_of_the_rendered_grace_period():
    s, defaults = service(), Settings.model_fields
    assert s["ExecStart"].split()[1:4] == ["worker", "--capability", "%i"]
    assert s["KillSignal"] == "SIGTERM" and s["KillMode"] == "mixed"
    assert s["Restart"] == "always"
    grace = defaults["deploy_step_seconds"].default + defaults["deploy_grace_margin"].default
    assert int(s["TimeoutStopSec"]) == grace == 630  # the terminationGracePeriodSeconds of deploy/k8s
    assert "terminationGracePeriodSeconds: 630" in (UNIT.parents[1] / "k8s" / "worker-demo.yaml").read_text()


@pytest.mark.redis
@pytest.mark.worker
@pytest.mark.faults
@pytest.mark.usefixtures("broker")
def test_sigterm_to_every_process_of_the_worker_kills_its_running_step(celery_worker_factory):
    """What KillMode=control-group would do; with KillMode=mixed (SIGTERM to the main process
    only) the step finishes once on the leaving worker: tests/faults/test_sigterm.py."""
    leaving = celery_worker_factory(queues=QUEUES, concurrency=1)
    log = new_log()
    s = step_of(log)
    run = start(
        Workflow(f"t.unit.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(s("a"), s("slow", sleep=4))).name
    )
    wait_for(lambda: running_step(run.id, "1.act"), timeout=60)
    leaving.kill_group(signal.SIGTERM)  # the main process and its pool, as systemd's default does
    celery_worker_factory(queues=QUEUES, concurrency=1)

    record = run.wait(120)
    assert record.status == "succeeded", record.error
    assert record.step("1.act").attempts == 2  # the pool process died mid-step: it ran again
    assert effects(log) == ["do:a", "do:slow"]
