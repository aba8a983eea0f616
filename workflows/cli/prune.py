"""``canvasflow prune``: delete old finished runs from the journal, in batches (retention)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from canvasflow.config.errors import InputError
from canvasflow.config.settings import get_settings
from canvasflow.workflows.cli._common import AddCommand
from canvasflow.workflows.store.records import TERMINAL
from canvasflow.workflows.store.retention import prune
from canvasflow.workflows.store.sql import store_for
from canvasflow.workflows.views.reports import parse_when


def cmd_prune(args: argparse.Namespace) -> int:
    cutoff = parse_when(args.older_than, "--older-than")
    if cutoff is None:  # argparse requires it; kept for callers of cmd_prune
        raise InputError("--older-than is required: a time ago (30d, 12h) or an ISO timestamp")
    report = prune(
        store_for(get_settings().database_url),
        cutoff,
        statuses=args.status,
        batch=args.batch,
        dry_run=args.dry_run,
    )
    data = report.to_json()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(_text(data))
    return 0


def _text(data: dict[str, Any]) -> str:
    verb = "would delete" if data["dry_run"] else "deleted"
    line = (
        f"{verb} {data['runs']} run(s) that ended before {data['cutoff']}: {data['steps']} steps, "
        f"{data['events']} events, {data['signals']} signals, {data['run_tags']} tags"
    )
    if data["kept_active"]:
        line += f"\nkept {len(data['kept_active'])} old run(s) with a child run still active"
    return line


def configure_parsers(add: AddCommand) -> None:
    sp = add("prune", cmd_prune)
    sp.add_argument(
        "--older-than",
        required=True,
        help="runs that ended before this: a time ago (30d, 12h, 90m) or an ISO timestamp",
    )
    sp.add_argument(
        "--status",
        action="append",
        choices=sorted(TERMINAL),
        metavar="STATUS",
        help="only runs that ended so (repeatable; default every final status): "
        + ", ".join(sorted(TERMINAL)),
    )
    sp.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    sp.add_argument("--batch", type=int, default=500, help="runs per transaction (default 500)")
