"""The ``canvasflow`` command. Every command takes ``--json`` for machines.

Errors are CanvasflowErrors: printed as one line (or ``{"error", "type"}`` with --json), exit 2.
Imports are lazy so that ``demo`` can point the settings at a Redis it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from canvasflow.config.errors import CanvasflowError, InputError


def _load_json(text: str | None, what: str) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{what} is not JSON ({exc}): {text!r}") from None


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text())


def _run_text(data: dict[str, Any]) -> str:
    lines = [f"run {data['id']}  {data['workflow']} v{data['version']}  {data['status']}"]
    if data.get("key") or data.get("tags"):
        lines.append(f"key: {data.get('key') or '-'}  tags: {', '.join(data.get('tags') or []) or '-'}")
    if data.get("result") is not None:
        lines.append(f"result: {json.dumps(data['result'])}")
    if data.get("error"):
        lines.append(f"error: {json.dumps(data['error'])}")
    for s in data.get("steps", []):
        comp = f"  comp={s['compensation_status']}" if s.get("compensation_status") else ""
        route = s.get("route")
        routed = f"  engine={route['engine']} ({route['strategy']}: {route['reason']})" if route else ""
        lines.append(
            f"  {s['step_id']:<28} {s['task']:<26} {s['status']:<12} "
            f"attempts={s['attempts']} {s.get('worker') or ''}{comp}{routed}"
        )
    return "\n".join(lines)


# -- commands ----------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    from canvasflow.workflows import start

    run = start(
        args.name, _load_json(args.input, "--input"), version=args.version, key=args.key, tags=args.tag or ()
    )
    record = run.wait(args.timeout) if args.wait else run.record
    _emit(args, record.to_json(), lambda: _run_text(record.to_json()))
    return 0 if not args.wait or record.status in ("succeeded", "waiting") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from canvasflow.workflows import get_run

    data = get_run(args.run).to_json()
    _emit(args, data, lambda: _run_text(data))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from canvasflow.workflows import list_runs

    records = list_runs(
        args.status,
        args.workflow,
        args.limit,
        key=args.key,
        tags=args.tag or (),
        since=_when(args.since, "--since"),
        until=_when(args.until, "--until"),
    )
    runs = [r.to_json() for r in records]
    for r in runs:
        r.pop("steps", None)
    _emit(
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _when(text: str | None, what: str) -> datetime | None:
    """An ISO timestamp (UTC unless it says otherwise), or a time ago: ``30m``, ``2h``, ``7d``."""
    if text is None:
        return None
    text = text.strip()
    if len(text) > 1 and text[-1] in _UNITS and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{what} {text!r} is neither an ISO timestamp (2026-05-01T12:00) nor a time ago (30m, 2h, 7d)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cmd_db(args: argparse.Namespace) -> int:
    """``db upgrade``: run the journal's migrations; ``db current``: its revision and the head."""
    from canvasflow.config.settings import get_settings
    from canvasflow.workflows.store.schema import current_revision, head_revision, names_for, upgrade
    from canvasflow.workflows.store.sql import make_engine

    settings = get_settings()
    names = names_for()
    engine = make_engine(settings.database_url)
    try:
        if args.action == "upgrade":
            upgrade(engine, names, args.revision)
        data = {
            "database": redact_url(settings.database_url),
            "table_prefix": names.prefix,
            "schema": names.schema,
            "version_table": names.version_table,
            "current": current_revision(engine, names),
            "head": head_revision(),
        }
    finally:
        engine.dispose()
    _emit(
        args,
        data,
        lambda: (
            f"{data['database']}: {data['current'] or 'empty'} (head {data['head']}, "
            f"tables {names.prefix}*{' in schema ' + str(names.schema) if names.schema else ''})"
        ),
    )
    return 0 if args.action == "upgrade" or data["current"] == data["head"] else 1


def redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _show(args: argparse.Namespace, run: Any) -> Any:
    """Print the run after an action (waiting for its end with --wait); return its record."""
    from canvasflow.workflows import get_run

    record = run.wait(args.timeout) if getattr(args, "wait", False) else get_run(run.id)
    data = record.to_json()
    _emit(args, data, lambda: _run_text(data))
    return record


def cmd_resume(args: argparse.Namespace) -> int:
    from canvasflow.workflows import resume

    _show(args, resume(args.run))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from canvasflow.workflows import cancel

    _show(args, cancel(args.run))
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    from canvasflow.workflows import signal

    _show(args, signal(args.run, args.name, _load_json(args.payload, "--payload")))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from canvasflow.workflows import undo

    _show(args, undo(args.run))
    return 0


def cmd_compensate(args: argparse.Namespace) -> int:
    from canvasflow.workflows import compensate

    record = _show(args, compensate(args.run))
    return 0 if record.status != "compensation_failed" else 1


def cmd_check(args: argparse.Namespace) -> int:
    """Steps marked ``writes=True`` that have no compensation, and compensations of unknown steps."""
    from canvasflow.compensation.registry import registry as compensations
    from canvasflow.config.celery_app import current_app
    from canvasflow.workers.step import StepTask
    from canvasflow.workflows import registry

    registry.load()
    app = current_app()
    problems = [
        f"step {name} writes but has no compensation: add @compensates({name.rsplit('.', 1)[-1]})"
        for name, task in sorted(app.tasks.items())
        if isinstance(task, StepTask)
        and getattr(task, "writes", False)
        and not compensations.compensation_of(name)
    ]
    problems += [
        f"compensation {comp} undoes {step}, which is not a registered step"
        for step, comp in compensations.items()
        if step not in app.tasks
    ]
    _emit(args, {"problems": problems}, lambda: "\n".join(problems) or "no problems")
    return 1 if problems else 0


def cmd_graph(args: argparse.Namespace) -> int:
    from canvasflow.config.errors import RunNotFound, WorkflowNotFound
    from canvasflow.workflows import get_run, registry
    from canvasflow.workflows.pictures import dot, mermaid
    from canvasflow.workflows.runtime.graph import StepGraph

    try:
        record = get_run(args.target)
        graph, status = StepGraph.from_json(record.graph), {s.step_id: s.status for s in record.steps}
        for s in record.steps:
            if s.compensation_status:
                status[s.step_id] = s.compensation_status
        title = f"{record.workflow} run {record.id}"
    except RunNotFound:
        try:
            wf = registry.get(args.target)
        except WorkflowNotFound:
            raise WorkflowNotFound(f"{args.target!r} is neither a run id nor a workflow name") from None
        graph, status, title = wf.compile(wf.validate(_load_json(args.input, "--input"))), {}, wf.name
    text = mermaid(graph, status) if args.format == "mermaid" else dot(graph, status, title)
    _emit(args, {"format": args.format, "graph": text}, lambda: text.rstrip())
    return 0


def cmd_workflows(args: argparse.Namespace) -> int:
    from canvasflow.workflows import registry

    data = [
        {"name": n, "versions": registry.versions(n), "inputs": registry.get(n).inputs.model_json_schema()}
        for n in registry.names()
    ]
    _emit(args, data, lambda: "\n".join(f"{d['name']}  versions: {', '.join(d['versions'])}" for d in data))
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    from canvasflow.config.brokers import queue_stats
    from canvasflow.config.celery_app import check_broker, current_app
    from canvasflow.config.queues import queue_for
    from canvasflow.workers.capabilities import registry
    from canvasflow.workflows import registry as workflows

    workflows.load()
    app = current_app()
    caps = registry.capabilities()
    check_broker()
    queues = [queue_for(cap) for cap in caps]
    stats = {q.queue: q for q in queue_stats(app, queues)}
    data: list[dict[str, Any]] = [
        {
            "capability": cap,
            "queue": queue,
            "depth": stats[queue].depth,
            "consumers": stats[queue].consumers,
            "tasks": tasks,
        }
        for (cap, tasks), queue in zip(caps.items(), queues, strict=True)
    ]
    _emit(
        args,
        data,
        lambda: "\n".join(
            f"{d['queue']:<24} depth={d['depth']:<6} consumers={d['consumers']:<4} {', '.join(d['tasks'])}"
            for d in data
        ),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Exec ``celery worker`` for the capabilities, named ``<capability>@%h``, importing what they need."""
    from canvasflow.config.settings import get_settings
    from canvasflow.workers.fleet import (
        capability_queues,
        default_hostname,
        engine_queues,
        fleet_modules,
        worker_command,
    )

    s = get_settings()
    caps = [c for given in args.capability for c in given.split(",") if c]
    if not caps and not args.control:
        raise InputError("give the fleet's --capability (one or more), or --control, or both")
    if args.engine and not caps:
        raise InputError("--engine needs the --capability it serves")
    queues = engine_queues(caps, args.engine) if args.engine else capability_queues(caps)
    if args.control:
        queues += [s.default_queue, s.control_queue]
    cmd = worker_command(
        queues,
        app=args.app or "canvasflow.app",
        concurrency=args.concurrency,
        hostname=args.hostname
        or default_hostname([f"{c}.{args.engine}" if args.engine else c for c in caps] or ["control"]),
        pool=args.pool,
        loglevel=args.loglevel,
        autoscale=args.autoscale,
        max_tasks_per_child=args.max_tasks_per_child,
    )
    modules = fleet_modules(caps, s, control=args.control, demo=args.demo)
    env = {"CANVASFLOW_WORKER_MODULES": json.dumps(modules)}
    if args.demo:  # the demo workflow's module must be found by clients and this worker alike
        env["CANVASFLOW_WORKFLOW_MODULES"] = json.dumps(list(dict.fromkeys([*s.workflow_modules, *modules])))
    if args.json:
        print(json.dumps({"command": cmd, "env": env}))
        return 0
    os.execve(cmd[0], cmd, {**os.environ, **env})
    return 0  # pragma: no cover


def cmd_engines(args: argparse.Namespace) -> int:
    """Declared engines with their live workers, consumers, queue depth and in-flight steps."""
    from canvasflow.config.celery_app import check_broker, current_app
    from canvasflow.workers.routing.report import engines_report, report_text
    from canvasflow.workflows import registry as workflows
    from canvasflow.workflows.runtime.context import runtime

    workflows.load()
    check_broker()
    rt = runtime()
    rows = engines_report(rt.redis, rt.settings, current_app())
    _emit(args, rows, lambda: report_text(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from canvasflow.workflows.demo_run import run_demo

    data = run_demo(args.order_id, as_json=args.json)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    return 0 if data["status"] == "succeeded" else 1


# -- parser --------------------------------------------------------------------------------
WORKFLOWS_HELP = "workflow modules to import, a,b (overrides CANVASFLOW_WORKFLOW_MODULES)"
APP_HELP = "your Celery app, as for celery -A (adopted with init_app); default canvasflow.app"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canvasflow",
        description="Workflows on Celery. Modules are found from the working directory, as with celery -A.",
    )
    p.add_argument("--workflows", help=WORKFLOWS_HELP)
    p.add_argument("-A", "--app", help=APP_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--workflows", default=argparse.SUPPRESS, help=WORKFLOWS_HELP)
        sp.add_argument("-A", "--app", default=argparse.SUPPRESS, help=APP_HELP)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("start", cmd_start, "start a workflow by name")
    sp.add_argument("name")
    sp.add_argument("--input", help="inputs as a JSON object")
    sp.add_argument("--version")
    sp.add_argument("--wait", action="store_true", help="wait until the run ends")
    sp.add_argument("--timeout", type=float, default=300)
    sp.add_argument("--key", help="business key: a second start with it returns the first run")
    sp.add_argument("--tag", action="append", help="a tag to find the run by (repeatable)")
    add("status", cmd_status, "a run and its steps").add_argument("run")
    sp = add("runs", cmd_runs, "list runs")
    sp.add_argument("--status")
    sp.add_argument("--workflow")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--key", help="the run started with this business key")
    sp.add_argument("--tag", action="append", help="runs carrying this tag (repeatable: all of them)")
    sp.add_argument("--since", help="created at or after: ISO timestamp or a time ago (30m, 2h, 7d)")
    sp.add_argument("--until", help="created before: ISO timestamp or a time ago")
    sp = add("db", cmd_db, "the journal's schema: upgrade it, or show its revision")
    sp.add_argument("action", choices=["upgrade", "current"])
    sp.add_argument("--revision", default="head", help="upgrade to this revision (default head)")
    sp = add("resume", cmd_resume, "resume a failed or cancelled run")
    sp.add_argument("run")
    sp.add_argument("--wait", action="store_true")
    sp.add_argument("--timeout", type=float, default=300)
    add("cancel", cmd_cancel, "cancel a run").add_argument("run")
    for name, fn, help_ in (
        ("undo", cmd_undo, "compensate every step of a succeeded run"),
        ("compensate", cmd_compensate, "retry failed compensations of a run"),
    ):
        sp = add(name, fn, help_)
        sp.add_argument("run")
        sp.add_argument("--wait", action="store_true")
        sp.add_argument("--timeout", type=float, default=300)
    add("check", cmd_check, "steps that write but have no compensation")
    sp = add("signal", cmd_signal, "send a signal to a waiting run")
    sp.add_argument("run")
    sp.add_argument("name")
    sp.add_argument("--payload", help="payload as JSON")
    sp = add("graph", cmd_graph, "draw a workflow or a run")
    sp.add_argument("target", help="a run id or a workflow name")
    sp.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    sp.add_argument("--input", help="inputs (for a workflow name)")
    add("workflows", cmd_workflows, "list registered workflows")
    add("queues", cmd_queues, "capabilities, their queues and depths")
    add("engines", cmd_engines, "engines, their live workers, consumers, queue depth, in-flight steps")
    sp = add("worker", cmd_worker, "run a worker for capabilities (Celery's worker options pass through)")
    sp.add_argument("--capability", action="append", default=[], help="repeat, or a,b")
    sp.add_argument("--engine", help="serve this engine of the capability (cap.<capability>.<engine> too)")
    sp.add_argument("--control", action="store_true", help="also consume the control queues")
    sp.add_argument("--demo", action="store_true", help="also import the demo's steps and workflow")
    sp.add_argument("-n", "--hostname", help="node name (default <capability>@%%h)")
    sp.add_argument("-c", "--concurrency", type=int)
    sp.add_argument("-P", "--pool")
    sp.add_argument("-l", "--loglevel", default="INFO")
    sp.add_argument("--autoscale", help="max,min")
    sp.add_argument("--max-tasks-per-child", type=int)
    sp = add("demo", cmd_demo, "run the demo workflow end to end")
    sp.add_argument("--order-id", type=int, default=42)
    return p


def find_modules_here(workflows: str | None) -> None:
    """As ``celery -A`` does: the working directory on ``sys.path``; ``--workflows`` over the setting."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    if workflows is not None:
        from canvasflow.config.settings import set_for_process

        set_for_process(workflow_modules=[m.strip() for m in workflows.split(",") if m.strip()])


def use_app(target: str) -> None:
    """Find the app as ``celery -A`` does and make it canvasflow's (init_app, unless it was already)."""
    from celery.app.utils import find_app

    from canvasflow.config.celery_app import current_app, init_app
    from canvasflow.config.errors import SettingsError

    try:
        found = find_app(target)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"-A {target}: no Celery app found there ({exc})") from None
    if found is not current_app():
        init_app(found)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from canvasflow.config.logging import configure_logging
    from canvasflow.config.settings import get_settings

    try:
        find_modules_here(args.workflows)
        if args.app and args.command != "worker":  # the worker command passes it on to celery
            use_app(args.app)
        configure_logging(get_settings().log_format, "WARNING" if args.command != "worker" else "INFO")
        return int(args.fn(args))
    except CanvasflowError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
