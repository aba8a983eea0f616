"""``canvasflow deadletters``: the malformed messages workers refused, newest first."""

from __future__ import annotations

import argparse

from canvasflow.config import deadletters
from canvasflow.workflows.cli._common import AddCommand, emit


def cmd_deadletters(args: argparse.Namespace) -> int:
    data = deadletters.recent(args.limit)
    emit(
        args,
        data,
        lambda: (
            "\n".join(
                f"{d['at']}  {d.get('queue') or '-':<20} {d.get('task') or '-'}  {d['reason']}" for d in data
            )
            or "no dead letters"
        ),
    )
    return 0


def configure_parsers(add: AddCommand) -> None:
    sp = add("deadletters", cmd_deadletters)
    sp.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
