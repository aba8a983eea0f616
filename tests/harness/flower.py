"""A real Flower for tests: ``celery flower`` on a free port, ready once it answers HTTP
*and* receives events.

Flower's HTTP server can answer before its event receiver has subscribed, and events sent
in between are lost for good. So readiness also sends a probe heartbeat from the made-up
worker ``flower-probe@canvasflow-test`` until Flower lists it (``/workers?json=1``), then
says that worker went offline. Flower's event state keeps it as an offline worker;
``/api/workers`` (which asks real workers) does not show it.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.workers import CeleryProcess

PROBE_HOSTNAME = "flower-probe@canvasflow-test"


class FlowerNotReady(RuntimeError):
    """Flower died, or did not answer HTTP or see events in time (the message carries its log)."""


Auth = tuple[str, str] | None


def _request(url: str, auth: Auth) -> urllib.request.Request:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    return urllib.request.Request(url, headers=headers)


def http_ok(url: str, timeout: float = 2.0, auth: Auth = None) -> bool:
    with urllib.request.urlopen(_request(url, auth), timeout=timeout) as response:
        return response.status == 200


def get_json(url: str, timeout: float = 2.0, auth: Auth = None) -> Any:
    """GET ``url`` as JSON (with basic auth ``(user, password)`` when given)."""
    with urllib.request.urlopen(_request(url, auth), timeout=timeout) as response:
        return json.loads(response.read())


def _send_probe(kind: str) -> None:
    from canvasflow.config.celery_app import app

    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname=PROBE_HOSTNAME, enabled=True)
        dispatcher.send(kind, freq=2.0, active=0, processed=0)
        dispatcher.close()


@dataclass(repr=False)
class FlowerProcess(CeleryProcess):
    """``celery flower`` listening on ``url``."""

    url: str = ""
    auth: Auth = None  # the (user, password) it was started with, if any

    def _fail(self, why: str) -> FlowerNotReady:
        return FlowerNotReady(f"flower at {self.url} {why}; log {self.log_path}:\n{self.log_tail()}")

    def _wait(self, what: str, check: Any, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not self.alive:
                raise self._fail(f"exited with code {self.process.returncode}")
            try:
                if check():
                    return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise self._fail(f"did not {what} in time")

    def wait_ready(self, timeout: float = 30.0) -> FlowerProcess:
        deadline = time.monotonic() + timeout
        self._wait("answer /healthcheck", lambda: http_ok(f"{self.url}/healthcheck"), deadline)

        def probe_seen() -> bool:
            _send_probe("worker-heartbeat")
            listed = get_json(f"{self.url}/workers?json=1", auth=self.auth)["data"]
            return any(w.get("hostname") == PROBE_HOSTNAME for w in listed)

        self._wait("receive a probe event", probe_seen, deadline)
        _send_probe("worker-offline")
        return self


def spawn_flower(*, port: int, log_dir: Path, cwd: Path, env: Mapping[str, str]) -> FlowerProcess:
    """Start Flower on 127.0.0.1:``port`` against the session's broker, its HTTP API open
    without authentication (Flower 2 refuses ``/api/*`` otherwise); does not wait for it."""
    args = ["flower", f"--port={port}", "--address=127.0.0.1"]
    base = CeleryProcess.spawn(
        f"flower-{port}",
        args,
        log_path=log_dir / f"flower-{port}.log",
        cwd=cwd,
        env={**env, "FLOWER_UNAUTHENTICATED_API": "true"},
    )
    return FlowerProcess(base.name, base.process, base.log_path, f"http://127.0.0.1:{port}")


def spawn_canvasflow_flower(
    *, port: int, log_dir: Path, cwd: Path, env: Mapping[str, str], auth: Auth = None
) -> FlowerProcess:
    """``canvasflow flower`` on 127.0.0.1:``port`` (basic auth and persistent state from the
    ``CANVASFLOW_FLOWER_*`` settings in ``env``; ``auth`` is what readiness logs in with)."""
    base = CeleryProcess.spawn(
        f"flower-{port}",
        ["flower", "--host", "127.0.0.1", "--port", str(port)],
        log_path=log_dir / f"flower-{port}.log",
        cwd=cwd,
        env=env,
        program=[sys.executable, "-m", "canvasflow.workflows.cli"],
    )
    return FlowerProcess(base.name, base.process, base.log_path, f"http://127.0.0.1:{port}", auth)
