"""``canvasflow versions check WORKFLOW --to VERSION`` and ``canvasflow migrate RUN --to-version
VERSION``: which runs in flight could move to another version of their workflow, and moving one."""

from __future__ import annotations

import argparse

from canvasflow.workflows.cli._common import RUN_HELP, AddCommand, emit
from canvasflow.workflows.client import check_versions, get_run, migrate
from canvasflow.workflows.runs.upgrade_plan import UpgradePlan
from canvasflow.workflows.views.reports import run_json, run_text


def cmd_versions(args: argparse.Namespace) -> int:
    plans = check_versions(args.workflow, args.to)
    data = {
        "workflow": args.workflow,
        "to_version": args.to,
        "runs": [p.to_json() for p in plans],
        "compatible": sum(p.compatible for p in plans),
        "incompatible": sum(not p.compatible for p in plans),
    }
    emit(args, data, lambda: _text(args.workflow, args.to, plans))
    return 0


def _text(workflow: str, to: str, plans: list[UpgradePlan]) -> str:
    if not plans:
        return f"no active, failed or cancelled run of {workflow} under another version than {to}"
    lines = []
    for p in plans:
        head = f"{p.run_id}  {p.status:<10} {p.from_version} -> {p.to_version}  "
        if p.compatible:
            lines.append(head + "can move")
            lines.append(f"    kept (not run again): {', '.join(p.kept) or '-'}")
            lines.append(f"    will run: {', '.join(p.rerun + p.added) or '-'}")
            lines.append(f"    skipped (not in {p.to_version}): {', '.join(p.skipped) or '-'}")
        else:
            first = p.mismatches[0]
            lines.append(head + f"cannot move: step {first.step_id} does not map ({first.reason})")
            lines.extend(f"    also: {m.step_id} ({m.reason})" for m in p.mismatches[1:])
    movable = sum(p.compatible for p in plans)
    lines.append(f"{movable} of {len(plans)} runs can move to {workflow} version {to}")
    return "\n".join(lines)


def cmd_migrate(args: argparse.Namespace) -> int:
    run = migrate(args.run, args.to_version)
    record = run.wait(args.timeout) if args.wait else get_run(run.id)
    data = run_json(record)
    emit(args, data, lambda: run_text(data, record.graph))
    return 0


def configure_parsers(add: AddCommand) -> None:
    """``versions`` (``check``) and ``migrate``."""
    sp = add("versions", cmd_versions)
    sp.add_argument("action", choices=["check"], help="check: which runs could move to --to")
    sp.add_argument("workflow", help="the workflow's name (see `canvasflow workflows`)")
    sp.add_argument("--to", required=True, metavar="VERSION", help="the version to move runs to")
    sp = add("migrate", cmd_migrate)
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument("--to-version", required=True, metavar="VERSION", help="the version to move the run to")
    sp.add_argument("--wait", action="store_true", help="wait until the run ends (or waits for a signal)")
    sp.add_argument("--timeout", type=float, default=300, help="seconds --wait waits; default 300")
