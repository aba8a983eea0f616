"""``canvasflow demo``: the main job end to end on this machine.

Finds Redis (or starts one), starts a real worker process, runs the ``order_total``
workflow (a chain around a chord), prints the result and each step's timing, and stops
everything it started. When it starts a Redis, it points the settings and the (already
built) Celery app at it before anything connects. The demo's modules are imported here
and by the demo's worker only (no other worker registers the demo's steps).

The broker may be Redis or RabbitMQ (``CANVASFLOW_BROKER_URL=amqp://...``). A RabbitMQ
broker is used as configured (it must answer: the demo does not start one); results and run
state stay in Redis, started locally when the configured one does not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from canvasflow.config.celery_app import DEMO_MODULES, app, check_broker, configure
from canvasflow.config.errors import CanvasflowError
from canvasflow.config.local_redis import LocalRedis, ensure_redis_for
from canvasflow.config.settings import ENV_PREFIX, Settings, get_settings, redact, set_for_process
from canvasflow.workers.fleet import spawn_worker, stop_worker, wait_ready
from canvasflow.workflows.cli._common import AddCommand
from canvasflow.workflows.client import start


def _local_services(settings: Settings, *, quiet: bool) -> tuple[Settings, LocalRedis]:
    """Start a Redis for the settings whose Redis does not answer; check the broker answers.
    The demo's modules join the workflow modules (of this process and the worker it starts)."""
    local = ensure_redis_for(
        {
            "BROKER_URL": settings.broker_url,
            "RESULT_BACKEND": settings.result_backend,
            "STATE_URL": settings.state_url,
        }
    )
    say = partial(print, file=sys.stderr if quiet else sys.stdout)  # --json keeps stdout JSON
    overrides: dict[str, object] = {
        "workflow_modules": list(dict.fromkeys([*settings.workflow_modules, *DEMO_MODULES]))
    }
    if local.process is not None:
        names = ", ".join(ENV_PREFIX + n for n in local.replaces)
        say(f"no Redis answered for {names}; started one at {local.url}")
        overrides.update({name.lower(): local.url for name in local.replaces})
    settings = set_for_process(**overrides)  # read by this process and the worker it starts
    configure(app, settings)  # built already if something imported it before
    try:
        check_broker()
    except Exception:
        local.stop()
        raise
    say(f"broker {redact(settings.broker_url)}; results and state in {redact(settings.redis_state_url)}")
    return settings, local


def run_demo(order_id: int = 42, *, as_json: bool = False) -> dict[str, Any]:
    settings, local = _local_services(get_settings(), quiet=as_json)
    hostname = f"demo-{os.getpid()}@localhost"
    log_path = Path(tempfile.gettempdir()) / f"canvasflow-demo-worker-{os.getpid()}.log"
    proc = spawn_worker(
        ["cap.demo", settings.default_queue, settings.control_queue],
        log_path=log_path,
        hostname=hostname,
        cwd=Path.cwd(),
    )
    try:
        try:
            wait_ready(hostname, proc)
        except RuntimeError as exc:
            raise CanvasflowError(
                f"the demo's worker did not start consuming ({exc}); its log says why: {log_path}"
            ) from None
        began = time.monotonic()
        run = start("order_total", {"order_id": order_id, "discount": 10})
        record = run.wait(timeout=60)
        elapsed = time.monotonic() - began
    except Exception:
        print(f"demo failed; worker log: {log_path}", file=sys.stderr)
        raise
    finally:
        stop_worker(proc)
        local.stop()
    out = record.to_json()
    out["elapsed_s"] = round(elapsed, 3)
    if not as_json:
        print(
            f"run {record.id} ({record.workflow} v{record.version}): {record.status} "
            f"in {elapsed * 1000:.0f} ms"
        )
        print(f"result: {record.result!r}\n")
        print(f"{'step':<24}{'task':<22}{'status':<11}{'ms':>7}  worker")
        for s in record.steps:
            ms = (
                (s.finished_at - s.started_at).total_seconds() * 1000 if s.started_at and s.finished_at else 0
            )
            print(f"{s.step_id:<24}{s.task:<22}{s.status:<11}{ms:>7.1f}  {s.worker or ''}")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    data = run_demo(args.order_id, as_json=args.json)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    return 0 if data["status"] == "succeeded" else 1


def configure_parsers(add: AddCommand) -> None:
    sp = add("demo", cmd_demo)
    sp.add_argument("--order-id", type=int, default=42, help="the demo order's id (default 42)")
