"""CLI commands for deployments: ``deploy render`` (Kubernetes manifests from the registries)
and ``worker-probe`` (a pod's liveness/readiness check: its worker's heartbeat is fresh)."""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
import time
from pathlib import Path

import canvasflow.app  # noqa: F401  (the composition root: this command runs in a composed process)
from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import InputError
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.beats import read_beat
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.deploy.manifests import Target
from canvasflow.workers.deploy.render import drift, render, write
from canvasflow.workers.engines import registry as engines
from canvasflow.workflows.authoring.definition import registry as workflows
from canvasflow.workflows.cli._common import AddCommand, emit


def cmd_deploy(args: argparse.Namespace) -> int:
    """Render the manifests into ``--out``; with ``--check``, exit 1 when the files there differ."""
    s = get_settings()
    workflows.load()
    for module in sorted({mod for mods in s.capability_modules.values() for mod in mods}):
        importlib.import_module(module)
    for name, value in (("--concurrency", args.concurrency), ("--max-replicas", args.max_replicas)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, not {value}")
    if not 0 <= args.min_replicas <= args.max_replicas:
        raise InputError(f"--min-replicas {args.min_replicas} must be between 0 and --max-replicas")
    target = Target(
        image=args.image,
        namespace=args.namespace,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        backlog_per_replica=args.backlog,
        app=args.app,  # -A: the workers and Flower run the project's app
    )
    rendered = render(
        s,
        target,
        app=current_app(),
        capabilities=capabilities.capabilities(),
        engines=engines.all(),
        concurrency=args.concurrency,
    )
    for warning in rendered.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(args.out)
    changes = drift(out, rendered) if args.check else write(out, rendered)
    data = {
        "out": str(out),
        "check": args.check,
        "changes": changes,
        "fleets": [{"name": f.name, "queues": list(f.queues), "grace": f.grace} for f in rendered.fleets],
        "warnings": rendered.warnings,
    }

    def text() -> str:
        if args.check:
            head = f"{out}: differs from `canvasflow deploy render`" if changes else f"{out}: up to date"
        else:
            head = f"{out}: {len(rendered.files)} files, {len(changes)} changed"
        return "\n".join([head, *(f"  {c}" for c in changes)])

    emit(args, data, text)
    return 1 if args.check and changes else 0


def cmd_worker_probe(args: argparse.Namespace) -> int:
    """Exit 0 while this pod's worker node beats (``<name>@<hostname>``), 1 otherwise."""
    if bool(args.name) == bool(args.node):
        raise InputError("give the worker's --name (as in <name>@<this host>) or its full --node")
    s = get_settings()
    node = args.node or f"{args.name}@{socket.gethostname()}"
    max_age = args.max_age or s.heartbeat_ttl
    client = state_client(s.redis_state_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        beat = read_beat(client, s.key_prefix, node)
    finally:
        client.close()
    age = None if beat is None else max(time.time() - beat.at, 0.0)
    alive = age is not None and age <= max_age
    data = {"node": node, "alive": alive, "age": age, "max_age": max_age}
    emit(
        args,
        data,
        lambda: f"{node}: heartbeat {age:.1f}s old" if alive else f"{node}: no fresh heartbeat",
    )
    return 0 if alive else 1


def configure_parsers(add: AddCommand) -> None:
    """``deploy`` and ``worker-probe``."""
    sp = add("deploy", cmd_deploy)
    sp.add_argument("action", choices=["render"], help="render the manifests (docs/operations.md)")
    sp.add_argument("--out", default="deploy/k8s", help="directory to write (default deploy/k8s)")
    sp.add_argument("--check", action="store_true", help="write nothing; exit 1 when --out differs")
    sp.add_argument("--image", default="registry.example.com/canvasflow:0.1.0", help="image:tag of every pod")
    sp.add_argument("--namespace", default="canvasflow", help="Kubernetes namespace (default canvasflow)")
    sp.add_argument("--concurrency", type=int, default=2, help="worker processes per pod (default 2)")
    sp.add_argument("--min-replicas", type=int, default=1, help="KEDA minReplicaCount per fleet (default 1)")
    sp.add_argument(
        "--max-replicas", type=int, default=20, help="KEDA maxReplicaCount per fleet (default 20)"
    )
    sp.add_argument("--backlog", type=int, default=20, help="waiting messages per replica KEDA aims at")
    sp = add("worker-probe", cmd_worker_probe)
    sp.add_argument("--name", help="the node name before the @ (demo, ocr.gpu, control); host: this one")
    sp.add_argument("--node", help="the full node name instead, e.g. demo@pod-1")
    sp.add_argument(
        "--max-age", type=float, help="seconds a heartbeat stays fresh (CANVASFLOW_HEARTBEAT_TTL)"
    )
