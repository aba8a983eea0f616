"""``canvasflow events``: the event stream (run, step, route and compensation events), tailed.

Without ``--follow`` it prints what the stream holds (the last ``--limit`` events, or every
event of ``--run``) and exits; with ``--follow`` it then waits for new ones until Ctrl-C.
``--json`` prints one JSON object a line. The stream is written when ``CANVASFLOW_EVENTS=true``
(:mod:`canvasflow.workflows.telemetry.events`).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from canvasflow.workflows.cli._common import AddCommand
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.telemetry.events import follow, read


def line(event: dict[str, Any]) -> str:
    """One event as a line: time, hook, run, step, then what it says."""
    at = datetime.fromtimestamp(float(event.get("at", 0)), UTC).strftime("%H:%M:%S.%f")[:-3]
    what = [
        f"{k}={event[k]}"
        for k in ("task", "status", "attempt", "worker", "engine", "retry_in")
        if event.get(k)
    ]
    if event.get("duration") is not None:
        what.append(f"took={float(event['duration']) * 1000:.1f}ms")
    if event.get("error"):
        error = event["error"]
        what.append(
            f"error={error.get('type')}: {error.get('message')}" if isinstance(error, dict) else str(error)
        )
    if event.get("hook") == "step_progress":
        what.append(f"progress={event.get('done')}/{event.get('total')} {event.get('note') or ''}".rstrip())
    step = event.get("step_id") or "-"
    return f"{at}  {event['hook']:<21} {event['run_id']}  {step:<20} {' '.join(what)}"


def cmd_events(args: argparse.Namespace) -> int:
    rt = runtime()
    prefix = rt.settings.key_prefix

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event, default=str) if args.json else line(event), flush=True)

    last = args.limit if args.limit is not None else (None if args.run else 50)
    held = read(rt.redis, prefix, run=args.run, last=last)
    for event in held:
        show(event)
    if not args.follow:
        if not held and not args.json:
            print("no events" + ("" if rt.settings.events else " (CANVASFLOW_EVENTS is off)"))
        return 0
    after = held[-1]["id"] if held else "$"
    for event in follow(rt.redis, prefix, run=args.run, after=after):
        show(event)
    return 0  # pragma: no cover (follow ends with Ctrl-C)


def configure_parsers(add: AddCommand) -> None:
    sp = add("events", cmd_events)
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C ends)")
    sp.add_argument("--run", help="only this run's events (all the stream holds of it)")
    sp.add_argument("--limit", type=int, help="print at most this many held events first (default 50)")
