"""Operators' input: every mistake is one line saying what to do, exit 2, no traceback.

Each case runs the real command (``python -m canvasflow.workflows.cli``) in a subprocess,
with the session's settings; ``--debug`` brings the traceback back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canvasflow.workflows import cancel, start
from tests.harness.plugin import ROOT
from tests.integration.badinput_steps import simple, waits

pytestmark = [pytest.mark.redis]


def cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, one line on stderr naming ``words``, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def refused_json(out: subprocess.CompletedProcess[str], kind: str, *words: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    assert data["type"] == kind, data
    for word in words:
        assert word in data["error"], (word, data)


def test_unknown_run_ids_are_refused_by_every_command() -> None:
    for command in (["status"], ["cancel"], ["resume"], ["undo"], ["compensate"], ["signal"]):
        extra = ["approved"] if command == ["signal"] else []
        refused(cli(*command, "no-such-run", *extra), "no run with id 'no-such-run'", "canvasflow runs")
    refused_json(cli("status", "no-such-run", "--json"), "RunNotFound", "no-such-run")


def test_runs_in_the_wrong_state_and_wrong_signals_are_refused() -> None:
    """No worker consumes these runs' steps: they stay running until cancelled."""
    run = start(waits.name)
    refused(cli("signal", run.id, "aproved"), "does not wait for a signal 'aproved'", "waits for: approved")
    refused(cli("undo", run.id), "can be undone")
    refused(cli("resume", run.id), run.id)
    cancel(run.id)
    refused(cli("cancel", run.id), "already cancelled")
    refused(cli("signal", run.id, "approved"), "takes no more signals")


def test_malformed_json_options_are_refused() -> None:
    refused(cli("start", simple.name, "--input", "{x: 1"), "--input is not JSON")
    mine = ("--workflows", "tests.integration.badinput_steps")
    refused(cli(*mine, "start", simple.name, "--input", '{"x": "one"}'), "x", "integer")
    refused(cli("start", "no.such.workflow"), "no workflow named 'no.such.workflow'")
    run = start(waits.name)
    refused(cli("signal", run.id, "approved", "--payload", "[1,"), "not JSON")
    cancel(run.id)
    refused(cli("runs", "--since", "yesterday"), "--since 'yesterday'")


def test_an_unknown_status_is_refused_by_the_parser() -> None:
    out = cli("runs", "--status", "bogus")
    assert out.returncode == 2 and "invalid choice: 'bogus'" in out.stderr and "Traceback" not in out.stderr


def test_settings_of_the_wrong_type_name_the_variable() -> None:
    refused(cli("runs", CANVASFLOW_PREFETCH_MULTIPLIER="abc"), "CANVASFLOW_PREFETCH_MULTIPLIER")
    line = refused(cli("runs", CANVASFLOW_WORKFLOW_MODULES="myapp.flows"), "CANVASFLOW_WORKFLOW_MODULES")
    assert "not JSON" in line
    refused_json(cli("runs", "--json", CANVASFLOW_LOG_LEVEL="LOUD"), "SettingsError", "CANVASFLOW_LOG_LEVEL")


def test_a_workflow_module_that_fails_to_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "brokenflows.py").write_text("raise RuntimeError('no config file here')\n")
    out = cli("--workflows", "brokenflows", "workflows", cwd=tmp_path)
    refused(out, "CANVASFLOW_WORKFLOW_MODULES", "'brokenflows'", "RuntimeError: no config file here")
    refused_json(
        cli("workflows", "--json", cwd=tmp_path, CANVASFLOW_WORKFLOW_MODULES='["brokenflows"]'),
        "SettingsError",
        "brokenflows",
    )
    debug = cli("--workflows", "brokenflows", "workflows", "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "no config file here" in debug.stderr


def test_a_missing_database_or_driver_is_one_line() -> None:
    refused(
        cli("runs", CANVASFLOW_DATABASE_URL="sqlite:////no/such/dir/journal.db"),
        "journal database",
        "CANVASFLOW_DATABASE_URL",
    )
    line = refused(
        cli("runs", CANVASFLOW_DATABASE_URL="postgresql://ops:hunter2@127.0.0.1:1/none"),
        "cannot be used",
    )
    assert "hunter2" not in line
    refused(
        cli("runs", CANVASFLOW_DATABASE_URL="postgresql+psycopg2://ops@127.0.0.1/test"),
        "driver 'psycopg2'",
        "pip install",
    )


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """As ``canvasflow runs --json | head -c0``: the reader is gone before the first write."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "canvasflow.workflows.cli", "runs", "--json", "--limit", "500"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_worker_passes_celerys_options_through() -> None:
    out = cli(
        "worker",
        "--capability",
        "demo",
        "-P",
        "threads",
        "-c",
        "3",
        "-l",
        "DEBUG",
        "--autoscale",
        "4,1",
        "--max-tasks-per-child",
        "7",
        "--json",
        "--",
        "--without-heartbeat",
        "--prefetch-multiplier=4",
    )
    assert out.returncode == 0, out.stderr
    cmd = json.loads(out.stdout)["command"]
    joined = " ".join(cmd)
    assert cmd[-2:] == ["--without-heartbeat", "--prefetch-multiplier=4"]
    for expected in ("threads", "3", "DEBUG", "4,1", "7", "cap.demo"):
        assert expected in cmd or expected in joined, (expected, cmd)
