"""``canvasflow worker``, ``queues`` and ``engines``: run a worker for capabilities, and look at
the queues and engines the fleet serves."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import canvasflow.app  # noqa: F401  (the composition root: this command runs in a composed process)
from canvasflow.config.brokers import queue_stats
from canvasflow.config.celery_app import check_broker, current_app
from canvasflow.config.errors import InputError
from canvasflow.config.queues import queue_for
from canvasflow.config.settings import get_settings
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.fleet import (
    capability_queues,
    default_hostname,
    engine_queues,
    fleet_modules,
    worker_command,
)
from canvasflow.workers.routing.report import engines_report, report_text
from canvasflow.workflows.authoring.definition import registry as workflows
from canvasflow.workflows.cli._common import AddCommand, emit
from canvasflow.workflows.runtime.context import runtime


def cmd_queues(args: argparse.Namespace) -> int:
    workflows.load()
    app = current_app()
    caps = capabilities.capabilities()
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
    emit(
        args,
        data,
        lambda: "\n".join(
            f"{d['queue']:<24} depth={d['depth']:<6} consumers={d['consumers']:<4} {', '.join(d['tasks'])}"
            for d in data
        ),
    )
    return 0


def cmd_engines(args: argparse.Namespace) -> int:
    """Declared engines with their live workers, consumers, queue depth and in-flight steps."""
    workflows.load()
    check_broker()
    rt = runtime()
    rows = engines_report(rt.redis, rt.settings, current_app())
    emit(args, rows, lambda: report_text(rows))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Exec ``celery worker`` for the capabilities, named ``<capability>@%h``, importing what they need."""
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


def configure_parsers(add: AddCommand) -> None:
    """``queues``, ``engines`` and ``worker``."""
    add("queues", cmd_queues)
    add("engines", cmd_engines)
    sp = add("worker", cmd_worker)
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
