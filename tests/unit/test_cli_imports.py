"""``canvasflow --help`` loads no library beyond the standard one, and ``canvasflow status``
neither composes the process (task modules, the rollback) nor loads Alembic, and reading a run
with it loads neither Celery nor kombu: checked by what a fresh interpreter has in
``sys.modules``, which a loaded machine cannot make flaky as a timing would. Measured CPU times
are in docs/console.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from celery import chain, chord

from canvasflow.config.celery_app import app
from canvasflow.config.settings import ENV_PREFIX
from canvasflow.workers.demo import add, mul, xsum
from canvasflow.workflows.runs.launch import step_rows
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.store.sql import store_for
from tests.layout import ROOT

HEAVY = ("celery", "kombu", "sqlalchemy", "redis", "pydantic", "pydantic_settings", "structlog", "alembic")

LOADED = """
import json, sys
from canvasflow.workflows.cli.main import build_parser, main
commands = sys.argv[1:]
if commands == ["--help"]:
    try:
        main(["--help"])
    except SystemExit:
        pass
else:
    build_parser(commands)
print(json.dumps(sorted(sys.modules)))
"""


# `canvasflow status RUN` as the command line runs it; then what it printed and every module loaded
READ = """
import contextlib, io, json, sys
from canvasflow.workflows.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main(sys.argv[1:])
print(json.dumps({"status": status, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""
# what reading a run must not load: the Celery app, its broker client and what they bring
NOT_FOR_READING = ("celery", "kombu", "amqp", "billiard", "vine", "yaml", "alembic")


def _run(script: str, argv: tuple[str, ...], env: dict[str, str] | None = None) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _loaded(*argv: str) -> set[str]:
    return set(_run(LOADED, argv))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_help_loads_the_standard_library_only() -> None:
    loaded = _loaded("--help")
    assert _roots(loaded) & set(HEAVY) == set()
    ours = {m for m in loaded if m.startswith("canvasflow")}
    assert ours <= {
        "canvasflow",
        "canvasflow.config",
        "canvasflow.config.errors",
        "canvasflow.config.faces",
        "canvasflow.workflows",
        "canvasflow.workflows.cli",
        "canvasflow.workflows.cli._common",
        "canvasflow.workflows.cli.main",
    }, ours


def test_status_reads_a_run_without_composing_the_process() -> None:
    loaded = _loaded("status")
    assert "canvasflow.workflows.cli.status" in loaded
    composed = {
        "canvasflow.app",
        "canvasflow.workflows.client",
        "canvasflow.workflows.tasks",
        "canvasflow.compensation.rollback",
        "canvasflow.workers.step",
        "alembic",
    }
    assert loaded & composed == set()


def test_a_command_that_acts_on_runs_is_composed() -> None:
    assert "canvasflow.app" in _loaded("start")


def _journal_with_runs(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A journal in ``path`` holding a finished run and a running one of the same canvas (status
    -> run id), and the environment of a process reading them whose state Redis does not answer
    (the journal alone tells, as when Redis is down; the command loads the same modules)."""
    url = f"sqlite:///{path / 'journal.db'}"
    store = store_for(url, table_prefix="cf_", schema="")
    graph = compile_canvas(chain(add.s(1, 1), chord([add.s(1), mul.s(2)], xsum.s())), app)
    runs = {
        status: store.create_run(
            run_id=uuid.uuid4().hex,
            workflow="t.reading",
            version="1",
            inputs={},
            graph=graph.to_json(),
            steps=step_rows(graph.steps.values()),
            status=status,
        )
        for status in ("succeeded", "running")
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env[f"{ENV_PREFIX}DATABASE_URL"] = url
    env[f"{ENV_PREFIX}TABLE_PREFIX"] = "cf_"
    env[f"{ENV_PREFIX}STATE_URL"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    return runs, env


def test_reading_a_run_loads_neither_celery_nor_kombu(tmp_path: Path) -> None:
    runs, env = _journal_with_runs(tmp_path)
    for status, run_id in runs.items():
        for argv in (("status", run_id), ("status", "--json", run_id)):
            told = _run(READ, argv, env)
            assert told["status"] == 0 and run_id in told["out"] and status in told["out"], told["out"]
            modules = set(told["modules"])
            assert "canvasflow.workflows.runs.reading" in modules
            assert sorted(_roots(modules) & set(NOT_FOR_READING)) == []
            assert "canvasflow.workflows.runtime.context" not in modules  # the runtime: Celery's app
            assert "canvasflow.workers.engines" not in modules  # the engine registry
