"""``canvasflow start``, ``runs`` (``--stalled`` too) and ``recover``: start runs,
look at them, and bring back the state of active runs."""

from __future__ import annotations

import argparse

from canvasflow.workflows.cli._common import (
    JSON_SOURCES,
    TIMEOUT_HELP,
    WAIT_HELP,
    AddCommand,
    emit,
    load_json,
)
from canvasflow.workflows.client import list_runs, start
from canvasflow.workflows.runs.recovery import recover, stalled_runs
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import RUN_STATUSES
from canvasflow.workflows.views.reports import parse_when, run_json, run_text, runs_json


def cmd_start(args: argparse.Namespace) -> int:
    run = start(
        args.name,
        load_json(args.input, "--input"),
        version=args.version,
        key=args.key,
        tags=args.tag or (),
        priority=args.priority,
    )
    record = run.wait(args.timeout) if args.wait else run.record
    data = run_json(record)
    emit(args, data, lambda: run_text(data, record.graph))
    return 0 if not args.wait or record.status in ("succeeded", "waiting") else 1


def cmd_runs(args: argparse.Namespace) -> int:
    if args.stalled:
        return _stalled(args)
    records = list_runs(
        args.status,
        args.workflow,
        args.limit,
        key=args.key,
        tags=args.tag or (),
        since=parse_when(args.since, "--since"),
        until=parse_when(args.until, "--until"),
    )
    runs = runs_json(records)
    emit(
        args,
        runs,
        lambda: (
            "\n".join(
                f"{r['id']}  {r['workflow']:<20} v{r['version']:<6} {r['status']:<20} {r['created_at']}"
                + (f"  key={r['key']}" if r.get("key") else "")
                for r in runs
            )
            or "no runs"
        ),
    )
    return 0


def _stalled(args: argparse.Namespace) -> int:
    rt = runtime()
    seconds = args.for_ if args.for_ is not None else rt.settings.stalled_after
    found = stalled_runs(rt, seconds, args.limit)
    data = [{**r.to_json(), "idle_seconds": round(idle, 1)} for r, idle in found]
    for r in data:
        r.pop("steps", None)
    emit(
        args,
        data,
        lambda: (
            "\n".join(
                f"{r['id']}  {r['workflow']:<20} {r['status']:<12} idle {r['idle_seconds']:.0f}s"
                "  (`canvasflow resume` it, or `canvasflow recover`)"
                for r in data
            )
            or f"no run stalled for {seconds:g}s"
        ),
    )
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Rebuild lost Redis state from the journal and bring the journal up to Redis, for every active run."""
    report = recover(runtime())
    data = {"rebuilt": report.rebuilt, "reconciled": report.reconciled}
    emit(
        args,
        data,
        lambda: (
            "\n".join(
                [f"rebuilt from the journal: {r}" for r in report.rebuilt]
                + [f"journal brought up to Redis: {r}" for r in report.reconciled]
            )
            or "nothing to recover"
        ),
    )
    return 0


def configure_parsers(add: AddCommand) -> None:
    """``start``, ``runs`` and ``recover``."""
    sp = add("start", cmd_start)
    sp.add_argument("name", help="the workflow's name (see `canvasflow workflows`)")
    sp.add_argument("--input", help="inputs, a JSON object: " + JSON_SOURCES)
    sp.add_argument("--version", help="the workflow version to run (default: the newest)")
    sp.add_argument("--wait", action="store_true", help=WAIT_HELP)
    sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)
    sp.add_argument("--key", help="business key: a second start with it returns the first run")
    sp.add_argument("--tag", action="append", help="a tag to find the run by (repeatable)")
    sp.add_argument("--priority", type=int, help="0..9, 9 first: every step of the run and its compensations")
    sp = add("runs", cmd_runs)
    sp.add_argument(
        "--status", choices=RUN_STATUSES, metavar="STATUS", help="in this state: " + ", ".join(RUN_STATUSES)
    )
    sp.add_argument("--workflow", help="runs of this workflow")
    sp.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    sp.add_argument("--key", help="the run started with this business key")
    sp.add_argument("--tag", action="append", help="runs carrying this tag (repeatable: all of them)")
    sp.add_argument("--since", help="created at or after: ISO timestamp or a time ago (30m, 2h, 7d)")
    sp.add_argument("--until", help="created before: ISO timestamp or a time ago")
    sp.add_argument("--stalled", action="store_true", help="only active runs with no progress for a while")
    sp.add_argument(
        "--for", dest="for_", type=float, help="seconds without progress (CANVASFLOW_STALLED_AFTER)"
    )
    add("recover", cmd_recover)
