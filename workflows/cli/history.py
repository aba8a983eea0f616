"""``canvasflow history RUN [--json]``: a run's events in the order they happened.

An unknown run id is a ``RunNotFound``: one line, exit 2, like every other command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from canvasflow.workers.routing.decisions import chain_text
from canvasflow.workflows.cli._common import RUN_HELP, AddCommand
from canvasflow.workflows.runs.history import history

TRACEBACK_LINES = 6  # of a failure's traceback, in the text output (--json has all of it)


def _line(ev: dict[str, Any]) -> list[str]:
    what = [ev["event"]]
    if ev.get("step_id"):
        what.append(ev["step_id"])
    if ev.get("generation"):
        what.append(f"gen={ev['generation']}")
    if ev.get("attempt"):
        what.append(f"attempt={ev['attempt']}")
    for key in ("worker", "queue"):
        if ev.get(key):
            what.append(f"{key}={ev[key]}")
    data = ev.get("data") or {}
    if data.get("compensation_status"):
        what.append(f"compensation={data['compensation_status']}")
    if data.get("wakes_at"):  # a sleep step fell asleep (durable timers)
        what.append(f"wakes_at={data['wakes_at']}")
    lines = [f"{ev['at']}  {'  '.join(what)}"]
    if data.get("routes"):  # the step's routing decisions so far, oldest first
        lines.append(f"    routes: {chain_text(data['routes'])}")
    error = ev.get("error")
    if error:
        lines.append(f"    {error.get('type', 'Error')}: {error.get('message', '')}")
        tb = (error.get("traceback") or "").rstrip().splitlines()
        lines += [f"    | {t}" for t in tb[-TRACEBACK_LINES:]]
    return lines


def history_text(events: list[dict[str, Any]]) -> str:
    return "\n".join(line for ev in events for line in _line(ev)) or "(no events)"


def cmd_history(args: argparse.Namespace) -> int:
    events = [ev.to_json() for ev in history(args.run)]
    print(json.dumps(events, indent=2, default=str) if args.json else history_text(events))
    return 0


def configure_parsers(add: AddCommand) -> None:
    sp = add("history", cmd_history)
    sp.add_argument("run", help=RUN_HELP)
