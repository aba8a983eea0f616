"""The console's actions on a run: the same public functions the CLI calls, and what each error
means over HTTP (nothing is changed when an action is refused)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canvasflow.config.errors import (
    CanvasflowError,
    InputError,
    PayloadTooLarge,
    ResumeRefused,
    RunNotFound,
    RunStateError,
    WorkflowNotFound,
)
from canvasflow.workflows.client import cancel, compensate, resume, signal
from canvasflow.workflows.views.errors import explain


@dataclass(frozen=True)
class Action:
    name: str
    title: str
    explains: str
    offered: frozenset[str]  # run statuses the run page offers it for


ACTIONS = {
    a.name: a
    for a in (
        Action(
            "resume",
            "Resume",
            "Run it again where it stopped: completed steps are kept and their results reused.",
            frozenset({"failed", "cancelled"}),
        ),
        Action(
            "cancel",
            "Cancel",
            "Stop it: no new step starts. With compensation, every completed step is rolled back too.",
            frozenset({"pending", "running", "waiting"}),
        ),
        Action(
            "signal",
            "Signal",
            "Send a named signal with a JSON payload to the run (a step waiting for it goes on).",
            frozenset({"running", "waiting"}),
        ),
        Action(
            "compensate",
            "Retry compensation",
            "Run again the compensations that failed (of a cancelled run: compensate every completed step).",
            frozenset({"compensation_failed", "cancelled"}),
        ),
    )
}


def payload_from_text(text: str | None) -> Any:
    """A signal payload typed in a form: JSON (blank: null)."""
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"the signal payload is not JSON ({exc}): {text!r}") from None


def perform(name: str, run_id: str, fields: Mapping[str, Any]) -> None:
    """Do action ``name``; ``fields``: ``compensate`` (cancel), ``name`` and ``payload`` (signal)."""
    if name not in ACTIONS:
        raise InputError(f"unknown action {name!r}: one of {', '.join(ACTIONS)}")
    if name == "resume":
        resume(run_id)
    elif name == "cancel":
        cancel(run_id, compensate=bool(fields.get("compensate")))
    elif name == "signal":
        signal_name = str(fields.get("name") or "").strip()
        if not signal_name:
            raise InputError("give the signal's name: one the run waits for")
        signal(run_id, signal_name, fields.get("payload"))
    else:
        compensate(run_id)


def http_error(exc: BaseException) -> tuple[int, str, str]:
    """``(status, message, kind)`` for an error: 404 unknown run or workflow, 400 bad input, 413
    too large, 409 wrong state, 503 a store or broker that does not answer, 500 anything else."""
    told = explain(exc)
    if isinstance(exc, PayloadTooLarge):
        return 413, told.message, told.kind
    if isinstance(exc, RunNotFound | WorkflowNotFound):
        return 404, told.message, told.kind
    if isinstance(exc, RunStateError | ResumeRefused):
        return 409, told.message, told.kind
    if isinstance(exc, CanvasflowError):
        return 400, told.message, told.kind
    return (503 if told.status == 2 else 500), told.message, told.kind
