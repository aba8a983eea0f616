"""``canvasflow resume``, ``cancel``, ``undo``, ``compensate`` and ``signal``: the actions on a
run (the console offers the same ones), each showing the run after it (``--wait``: at its end)."""

from __future__ import annotations

import argparse

from canvasflow.workflows.cli._common import (
    JSON_SOURCES,
    RUN_HELP,
    TIMEOUT_HELP,
    WAIT_HELP,
    AddCommand,
    emit,
    load_json,
)
from canvasflow.workflows.client import Run, cancel, compensate, get_run, resume, signal, undo
from canvasflow.workflows.store.records import RunRecord
from canvasflow.workflows.views.reports import run_json, run_text


def _show(args: argparse.Namespace, run: Run) -> RunRecord:
    """Print the run after an action (waiting for its end with --wait); return its record."""
    record = run.wait(args.timeout) if getattr(args, "wait", False) else get_run(run.id)
    data = run_json(record)
    emit(args, data, lambda: run_text(data, record.graph))
    return record


def cmd_resume(args: argparse.Namespace) -> int:
    _show(args, resume(args.run, from_step=args.from_step, to_version=args.to_version))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    record = _show(args, cancel(args.run, compensate=args.compensate))
    return 0 if record.status != "compensation_failed" else 1


def cmd_signal(args: argparse.Namespace) -> int:
    _show(args, signal(args.run, args.name, load_json(args.payload, "--payload")))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    _show(args, undo(args.run))
    return 0


def cmd_compensate(args: argparse.Namespace) -> int:
    record = _show(args, compensate(args.run))
    return 0 if record.status != "compensation_failed" else 1


def _waits(sp: argparse.ArgumentParser, help_: str = WAIT_HELP) -> None:
    sp.add_argument("--wait", action="store_true", help=help_)
    sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)


def configure_parsers(add: AddCommand) -> None:
    """``resume``, ``cancel``, ``undo``, ``compensate`` and ``signal``."""
    sp = add("resume", cmd_resume)
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="run this step and everything downstream of it again (also of a succeeded run)",
    )
    sp.add_argument(
        "--to-version",
        metavar="VERSION",
        help="resume under this version of the workflow, keeping completed steps that map (as migrate)",
    )
    _waits(sp)
    sp = add("cancel", cmd_cancel)
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument(
        "--compensate",
        action="store_true",
        help="roll back: compensate every completed step, including running ones when they finish",
    )
    _waits(sp, "wait until the rollback ends")
    for name, handler in (("undo", cmd_undo), ("compensate", cmd_compensate)):
        sp = add(name, handler)
        sp.add_argument("run", help=RUN_HELP)
        _waits(sp)
    sp = add("signal", cmd_signal)
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument("name", help="the signal's name: one the run waits for")
    sp.add_argument("--payload", help="payload: " + JSON_SOURCES)
