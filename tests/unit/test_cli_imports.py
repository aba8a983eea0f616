"""``canvasflow --help`` loads no library beyond the standard one, and ``canvasflow status``
neither composes the process (task modules, the rollback) nor loads Alembic: checked by what a
fresh interpreter has in ``sys.modules``, which a loaded machine cannot make flaky as a timing
would. Measured CPU times are in docs/console.md."""

from __future__ import annotations

import json
import subprocess
import sys

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


def _loaded(*argv: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


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
