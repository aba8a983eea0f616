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
from typing import Any

from canvasflow.app import init_app  # the composition root: every command runs in a composed process
from canvasflow.config.errors import InputError
from canvasflow.workflows.store.records import RUN_STATUSES
from canvasflow.workflows.views.reports import parse_when, run_json, run_text, runs_json

_when = parse_when  # the CLI's time parser, now in workflows/views/reports.py (cli_prune imports this name)


def _load_json(text: str | None, what: str) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{what} is not JSON ({exc}): {text!r}") from None


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text())


# -- commands ----------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    from canvasflow.workflows import start

    run = start(
        args.name, _load_json(args.input, "--input"), version=args.version, key=args.key, tags=args.tag or ()
    )
    record = run.wait(args.timeout) if args.wait else run.record
    data = run_json(record)
    _emit(args, data, lambda: run_text(data, record.graph))
    return 0 if not args.wait or record.status in ("succeeded", "waiting") else 1


def cmd_status(args: argparse.Namespace) -> int:
    from canvasflow.workflows import get_run

    record = get_run(args.run)
    data = run_json(record)
    _emit(args, data, lambda: run_text(data, record.graph))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from canvasflow.workflows import list_runs

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


def _stalled(args: argparse.Namespace) -> int:
    from canvasflow.workflows.runs.recovery import stalled_runs
    from canvasflow.workflows.runtime.context import runtime

    rt = runtime()
    seconds = args.for_ if args.for_ is not None else rt.settings.stalled_after
    found = stalled_runs(rt, seconds, args.limit)
    data = [{**r.to_json(), "idle_seconds": round(idle, 1)} for r, idle in found]
    for r in data:
        r.pop("steps", None)
    _emit(
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
    from canvasflow.workflows.runs.recovery import recover
    from canvasflow.workflows.runtime.context import runtime

    report = recover(runtime())
    data = {"rebuilt": report.rebuilt, "reconciled": report.reconciled}
    _emit(
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


def _show(args: argparse.Namespace, run: Any) -> Any:
    """Print the run after an action (waiting for its end with --wait); return its record."""
    from canvasflow.workflows import get_run

    record = run.wait(args.timeout) if getattr(args, "wait", False) else get_run(run.id)
    data = run_json(record)
    _emit(args, data, lambda: run_text(data, record.graph))
    return record


def cmd_resume(args: argparse.Namespace) -> int:
    from canvasflow.workflows import resume

    _show(args, resume(args.run, from_step=args.from_step))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from canvasflow.workflows import cancel

    record = _show(args, cancel(args.run, compensate=args.compensate))
    return 0 if record.status != "compensation_failed" else 1


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
    from canvasflow.workflows.runtime.graph import StepGraph
    from canvasflow.workflows.views.pictures import dot, mermaid

    try:
        record = get_run(args.target)
        graph, status = StepGraph.from_json(record.graph), {s.step_id: s.status for s in record.steps}
        routes = {s.step_id: s.route for s in record.steps if s.route}
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
        routes = {}
    text = mermaid(graph, status, routes) if args.format == "mermaid" else dot(graph, status, title, routes)
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
    cmd += [a for i, a in enumerate(args.celery_args or []) if not (i == 0 and a == "--")]
    modules = fleet_modules(caps, s, control=args.control, demo=args.demo)
    env = {"CANVASFLOW_WORKER_MODULES": json.dumps(modules)}
    if args.metrics_port:
        env.update(CANVASFLOW_METRICS="true", CANVASFLOW_METRICS_PORT=str(args.metrics_port))
    if args.demo:  # the demo workflow's module must be found by clients and this worker alike
        env["CANVASFLOW_WORKFLOW_MODULES"] = json.dumps(list(dict.fromkeys([*s.workflow_modules, *modules])))
    if args.json:
        print(json.dumps({"command": cmd, "env": env}))
        return 0
    os.execve(cmd[0], cmd, {**os.environ, **env})
    return 0  # pragma: no cover


def cmd_deadletters(args: argparse.Namespace) -> int:
    from canvasflow.config import deadletters

    data = deadletters.recent(args.limit)
    _emit(
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
    from canvasflow.workflows.cli.demo import run_demo

    data = run_demo(args.order_id, as_json=args.json)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    return 0 if data["status"] == "succeeded" else 1


# -- parser --------------------------------------------------------------------------------
WORKFLOWS_HELP = "workflow modules to import, a,b (overrides CANVASFLOW_WORKFLOW_MODULES)"
APP_HELP = "your Celery app, as for celery -A (adopted with init_app); default canvasflow.app"
DEBUG_HELP = "on an error, show the Python traceback instead of one line"
RUN_HELP = "the run's id (see `canvasflow runs`)"
WAIT_HELP = "wait until the run ends (or waits for a signal), then show it"
TIMEOUT_HELP = "seconds --wait waits before giving up (exit 3); default 300"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="canvasflow",
        description="Workflows on Celery. Modules are found from the working directory, as with celery -A.",
    )
    p.add_argument("--workflows", help=WORKFLOWS_HELP)
    p.add_argument("-A", "--app", help=APP_HELP)
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("--workflows", default=argparse.SUPPRESS, help=WORKFLOWS_HELP)
        sp.add_argument("-A", "--app", default=argparse.SUPPRESS, help=APP_HELP)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("start", cmd_start, "start a workflow by name")
    sp.add_argument("name", help="the workflow's name (see `canvasflow workflows`)")
    sp.add_argument("--input", help="inputs as a JSON object")
    sp.add_argument("--version", help="the workflow version to run (default: the newest)")
    sp.add_argument("--wait", action="store_true", help=WAIT_HELP)
    sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)
    sp.add_argument("--key", help="business key: a second start with it returns the first run")
    sp.add_argument("--tag", action="append", help="a tag to find the run by (repeatable)")
    add("status", cmd_status, "a run and its steps").add_argument("run", help=RUN_HELP)
    sp = add("runs", cmd_runs, "list runs")
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
    sp = add("db", cmd_db, "the journal's schema: upgrade it, or show its revision")
    sp.add_argument("action", choices=["upgrade", "current"], help="upgrade the tables, or show the revision")
    sp.add_argument("--revision", default="head", help="upgrade to this revision (default head)")
    add("recover", cmd_recover, "rebuild lost run state from the journal; bring the journal up to Redis")
    sp = add("resume", cmd_resume, "resume a failed, cancelled or stalled run")
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="run this step and everything downstream of it again (also of a succeeded run)",
    )
    sp.add_argument("--wait", action="store_true", help=WAIT_HELP)
    sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)
    sp = add("cancel", cmd_cancel, "cancel a run")
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument(
        "--compensate",
        action="store_true",
        help="roll back: compensate every completed step, including running ones when they finish",
    )
    sp.add_argument("--wait", action="store_true", help="wait until the rollback ends")
    sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)
    for name, fn, help_ in (
        ("undo", cmd_undo, "compensate every step of a succeeded or cancelled run"),
        ("compensate", cmd_compensate, "retry failed compensations of a run (of a cancelled one: undo it)"),
    ):
        sp = add(name, fn, help_)
        sp.add_argument("run", help=RUN_HELP)
        sp.add_argument("--wait", action="store_true", help=WAIT_HELP)
        sp.add_argument("--timeout", type=float, default=300, help=TIMEOUT_HELP)
    add("check", cmd_check, "steps that write but have no compensation")
    sp = add("signal", cmd_signal, "send a signal to a waiting run")
    sp.add_argument("run", help=RUN_HELP)
    sp.add_argument("name", help="the signal's name: one the run waits for")
    sp.add_argument("--payload", help="payload as JSON")
    sp = add("graph", cmd_graph, "draw a workflow or a run")
    sp.add_argument("target", help="a run id or a workflow name")
    sp.add_argument("--format", choices=["mermaid", "dot"], default="mermaid", help="picture language")
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
    sp.add_argument("-c", "--concurrency", type=int, help="celery worker --concurrency: processes or threads")
    sp.add_argument("-P", "--pool", help="celery worker --pool: prefork, threads, solo, gevent, eventlet")
    sp.add_argument("-l", "--loglevel", default="INFO", help="celery worker --loglevel (default INFO)")
    sp.add_argument("--autoscale", help="celery worker --autoscale: max,min processes")
    sp.add_argument("--max-tasks-per-child", type=int, help="celery worker --max-tasks-per-child")
    sp.add_argument("--metrics-port", type=int, help="serve /metrics on this port (CANVASFLOW_METRICS on)")
    sp.add_argument(
        "celery_args",
        nargs=argparse.REMAINDER,
        help="after --: any other `celery worker` options, as they are",
    )
    from canvasflow.workflows.cli.history import register as add_history

    add_history(add, RUN_HELP)
    sp = add("deadletters", cmd_deadletters, "malformed messages workers refused, newest first")
    sp.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    from canvasflow.workflows.cli.ui import register as register_ui

    register_ui(add)
    sp = add("demo", cmd_demo, "run the demo workflow end to end")
    sp.add_argument("--order-id", type=int, default=42, help="the demo order's id (default 42)")
    from canvasflow.workflows.cli.deploy import add_commands as add_deploy_commands

    add_deploy_commands(add)
    from canvasflow.workflows.cli import prune as cli_prune
    from canvasflow.workflows.cli import schedule as cli_schedule

    cli_prune.register(add)  # retention and schedules: commands of their own modules
    cli_schedule.register(add)
    from canvasflow.workflows.cli import events as cli_events  # telemetry (docs/observability.md)
    from canvasflow.workflows.cli import metrics as cli_metrics

    cli_metrics.register(add)
    cli_events.register(add)
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

    from canvasflow.config.celery_app import current_app
    from canvasflow.config.errors import SettingsError

    try:
        found = find_app(target)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"-A {target}: no Celery app found there ({exc})") from None
    if found is not current_app():
        init_app(found)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error is one line (or JSON with --json), exit 2, a traceback only with --debug."""
    args = build_parser().parse_args(argv)
    try:
        from canvasflow.config.logging import configure_logging
        from canvasflow.config.settings import get_settings

        find_modules_here(args.workflows)
        if args.app and args.command != "worker":  # the worker command passes it on to celery
            use_app(args.app)
        configure_logging(get_settings().log_format, "WARNING" if args.command != "worker" else "INFO")
        status = int(args.fn(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below
        return status
    except BrokenPipeError:  # `canvasflow runs | head`: the reader left; nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except TimeoutError as exc:
        if args.debug:
            raise
        _error(args, str(exc), "TimeoutError")
        return 3
    except Exception as exc:
        if args.debug:
            raise
        from canvasflow.workflows.cli.errors import explain

        told = explain(exc)
        _error(args, told.message, told.kind)
        return told.status


def _error(args: argparse.Namespace, message: str, kind: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "type": kind}))
    else:
        print(f"error: {message}", file=sys.stderr)

