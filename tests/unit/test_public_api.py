"""The public names of ``canvasflow``, frozen: a refactor cannot add or drop one by accident.

(Temporal's sdk-python does the same in tests/test_workflow_exports.py.) Changing the list is a
change of the public API: update docs/API.md and the README with it.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import canvasflow

PUBLIC = [
    "BrokerUnavailable",
    "CanvasflowError",
    "CompensationError",
    "DeadlineExceeded",
    "DefinitionError",
    "Engine",
    "EngineError",
    "ExecutionContext",
    "InputError",
    "Limit",
    "NoContext",
    "ResumeRefused",
    "RoutingError",
    "Run",
    "RunNotFound",
    "RunStateError",
    "SettingsError",
    "StateUnavailable",
    "UpgradeRefused",
    "Workflow",
    "WorkflowNotFound",
    "action",
    "blobs",
    "cancel",
    "check_versions",
    "compensate",
    "compensates",
    "context",
    "current_app",
    "execute_action",
    "get_run",
    "history",
    "init_app",
    "input",
    "list_runs",
    "map_reduce",
    "migrate",
    "once",
    "parallel_capability",
    "pipeline",
    "register_engine",
    "register_strategy",
    "result",
    "resume",
    "scatter_gather",
    "send_signal",
    "signal",
    "sleep",
    "sleep_until",
    "start",
    "start_many",
    "step",
    "undo",
    "value",
    "wait_for_response",
    "wait_signal",
]


def test_the_public_names_are_frozen():
    assert sorted(canvasflow.__all__) == PUBLIC
    assert set(PUBLIC) <= set(dir(canvasflow))


def test_every_public_name_resolves_to_what_it_says():
    classes = [n for n in PUBLIC if inspect.isclass(getattr(canvasflow, n))]
    for name in [n for n in classes if n.endswith(("Error", "Refused", "Unavailable", "NotFound"))]:
        assert issubclass(getattr(canvasflow, name), canvasflow.CanvasflowError), name
    assert isinstance(canvasflow.blobs, types.ModuleType)
    callables = [n for n in PUBLIC if n not in ("blobs",)]
    assert all(callable(getattr(canvasflow, n)) for n in callables)
    assert canvasflow.step.__module__ == "canvasflow.workers.step"  # the decorator, not its module


def test_importing_the_face_builds_nothing():
    """``import canvasflow`` hands names on lazily: no Celery app, no runtime module until asked."""
    probe = "import sys, canvasflow; print(sorted(m for m in sys.modules if m.startswith('canvasflow')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "['canvasflow', 'canvasflow.config', 'canvasflow.config.faces']"
    assert (
        "celery"
        not in subprocess.run(
            [sys.executable, "-c", "import sys, canvasflow; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        ).stdout
    )
