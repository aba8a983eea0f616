"""``canvasflow schedule add|list|remove``: the file beat reads (docs/retention-and-schedules.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

import canvasflow.app  # noqa: F401  (the composition root: this command runs in a composed process)
from canvasflow.config.errors import InputError
from canvasflow.workflows.cli._common import JSON_SOURCES, AddCommand, load_json
from canvasflow.workflows.runs import schedules

BEAT = "celery -A canvasflow.app beat -S canvasflow.workflows.runs.schedule_beat:ScheduleFileScheduler"


def cmd_schedule(args: argparse.Namespace) -> int:
    path = schedules.schedules_path()
    if args.action == "list":
        data: Any = [asdict(s) for s in schedules.load(path).values()]
        text = "\n".join(_line(s) for s in data) or f"no schedules in {path}"
    elif args.target is None:
        raise InputError(f"schedule {args.action} needs a name: canvasflow schedule {args.action} NAME ...")
    elif args.action == "add":
        inputs = load_json(args.input, "--input")
        sched = schedules.Schedule(
            name=args.name or args.target,
            workflow=args.target,
            inputs=inputs,
            cron=args.cron,
            every=args.every,
            version=args.version,
        )
        data = asdict(schedules.add(sched, replace=args.replace, path=path))
        text = f"added {_line(data)}\nin {path}; beat picks it up: {BEAT}"
    else:
        data = asdict(schedules.remove(args.target, path))
        text = f"removed schedule {data['name']} from {path}"
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _line(s: dict[str, Any]) -> str:
    when = f"cron {s['cron']!r}" if s.get("cron") else f"every {s['every']}"
    version = f" v{s['version']}" if s.get("version") else ""
    return f"{s['name']}: {s['workflow']}{version} {when} inputs {json.dumps(s['inputs'])}"


def configure_parsers(add: AddCommand) -> None:
    sp = add("schedule", cmd_schedule)
    sp.add_argument("action", choices=["add", "list", "remove"], help="what to do")
    sp.add_argument("target", nargs="?", help="add: the workflow to start; remove: the schedule's name")
    sp.add_argument("--name", help="add: the schedule's name (default: the workflow's)")
    sp.add_argument("--cron", help="add: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'")
    sp.add_argument("--every", help="add: an interval instead of cron: 30s, 5m, 1h")
    sp.add_argument(
        "--input", help="add: the inputs, a JSON object (validated now and at each start): " + JSON_SOURCES
    )
    sp.add_argument("--version", help="add: the workflow version (default: the newest at each start)")
    sp.add_argument("--replace", action="store_true", help="add: replace a schedule of that name")
