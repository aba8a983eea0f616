"""``canvasflow demo``: the main job end to end on this machine.

Finds Redis (or starts one), starts a real worker process, runs the ``order_total``
workflow (a chain around a chord), prints the result and each step's timing, and stops
everything it started. When it starts a Redis, it points the settings and the (already
built) Celery app at it before anything connects. The demo's modules are imported here
and by the demo's worker only (no other worker registers the demo's steps).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from canvasflow.config.celery_app import DEMO_MODULES
from canvasflow.config.local_redis import ensure_redis
from canvasflow.config.settings import get_settings, set_for_process


def run_demo(order_id: int = 42, *, as_json: bool = False) -> dict[str, Any]:
    settings = get_settings()
    overrides: dict[str, object] = {
        "workflow_modules": list(dict.fromkeys([*settings.workflow_modules, *DEMO_MODULES]))
    }
    local = ensure_redis(settings.broker_url)
    if local.process is not None:
        print(f"no Redis answered at {settings.broker_url}; started one at {local.url}")
        overrides.update(broker_url=local.url, result_backend=local.url)
    settings = set_for_process(**overrides)  # read by this process and the worker it starts
    from canvasflow.config.celery_app import app, configure

    configure(app, settings)  # built already if something imported it before
    from canvasflow.workers.fleet import spawn_worker, stop_worker, wait_ready
    from canvasflow.workflows import start

    hostname = f"demo-{os.getpid()}@localhost"
    log_path = Path(tempfile.gettempdir()) / f"canvasflow-demo-worker-{os.getpid()}.log"
    proc = spawn_worker(
        ["cap.demo", settings.default_queue, settings.control_queue],
        log_path=log_path,
        hostname=hostname,
        cwd=Path.cwd(),
    )
    try:
        wait_ready(hostname, proc)
        began = time.monotonic()
        run = start("order_total", {"order_id": order_id, "discount": 10})
        record = run.wait(timeout=60)
        elapsed = time.monotonic() - began
    except Exception:
        print(f"demo failed; worker log: {log_path}")
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
