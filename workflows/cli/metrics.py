"""``canvasflow metrics``: serve Prometheus's ``/metrics`` for this host (or print it once).

It adds up the metric files every canvasflow process on this host wrote into
``CANVASFLOW_METRICS_DIR`` and measures queue depth, consumers, active and stalled runs live
(:mod:`canvasflow.workflows.telemetry.exporter`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import canvasflow.app  # noqa: F401  (the composition root: this command runs in a composed process)
from canvasflow.config.settings import get_settings
from canvasflow.workflows.authoring.definition import registry
from canvasflow.workflows.cli._common import AddCommand
from canvasflow.workflows.telemetry.exporter import build_registry, serve
from canvasflow.workflows.telemetry.metrics import metrics_dir


def cmd_metrics(args: argparse.Namespace) -> int:
    registry.load()  # the steps' capabilities: their queues are measured
    settings = get_settings()
    if args.once:
        text = generate_latest(build_registry(settings)).decode()
        if args.json:
            print(json.dumps(_samples(text_string_to_metric_families(text)), indent=2))
        else:
            print(text, end="")
        return 0
    server = serve(settings, args.port, args.address)
    where = {
        "url": f"http://{args.address}:{server.server_port}/metrics",
        "directory": str(metrics_dir(settings)),
    }
    print(
        json.dumps(where) if args.json else f"serving {where['url']} (metric files in {where['directory']})"
    )
    while True:  # the server runs in a daemon thread; Ctrl-C ends the command
        time.sleep(3600)


def _samples(families: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "labels": s.labels, "value": s.value} for family in families for s in family.samples
    ]


def configure_parsers(add: AddCommand) -> None:
    sp = add("metrics", cmd_metrics)
    sp.add_argument("--port", type=int, default=9808, help="port to serve on (default 9808)")
    sp.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1, this host only; 0.0.0.0 for a Prometheus elsewhere)",
    )
    sp.add_argument("--once", action="store_true", help="print the metrics once and exit (--json: parsed)")
