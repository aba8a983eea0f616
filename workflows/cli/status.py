"""``canvasflow status RUN``: a run and its steps, read without composing the process (no task
modules, no rollback listener), so that an operator's look at a run starts quickly."""

from __future__ import annotations

import argparse

from canvasflow.workflows.cli._common import RUN_HELP, AddCommand, emit
from canvasflow.workflows.runs.reading import read_run
from canvasflow.workflows.views.reports import run_json, run_text


def cmd_status(args: argparse.Namespace) -> int:
    record = read_run(args.run)
    data = run_json(record)
    emit(args, data, lambda: run_text(data, record.graph))
    return 0


def configure_parsers(add: AddCommand) -> None:
    add("status", cmd_status).add_argument("run", help=RUN_HELP)
