"""The README's ``send_task`` snippet, exactly as printed, against a real worker.

The worker consumes only ``cap.demo`` and ``canvasflow.control``: a start message that
went anywhere else (Celery's default ``celery`` queue, or ``canvasflow``) would never run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from canvasflow.config.celery_app import app
from canvasflow.workflows.client import Run
from tests.harness.plugin import StartWorker
from tests.integration.projects import readme_blocks

pytestmark = [pytest.mark.redis, pytest.mark.worker]

SNIPPET = readme_blocks('send_task(\n    "canvasflow.start"')[0]
SERVICE = """
from celery import Celery
celery_app = Celery("backend", broker={url!r}, backend={url!r})  # a plain app: no canvasflow config
{snippet}
import sys
assert not [m for m in sys.modules if m.startswith("canvasflow")], "the service imported canvasflow"
"""


@pytest.fixture
def control_worker(celery_worker_factory: StartWorker) -> None:
    celery_worker_factory(queues=("cap.demo", "canvasflow.control"))


def _reply(printed: str) -> dict[str, str]:
    reply: dict[str, str] = ast.literal_eval(printed.strip().splitlines()[-1])
    return reply


def test_the_snippet_starts_a_run_from_a_service_without_canvasflow(
    control_worker: None, redis_url: str, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, "-P", "-c", SERVICE.format(url=redis_url, snippet=SNIPPET)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    record = Run(_reply(out.stdout)["run_id"]).wait(60)
    assert (record.status, record.result) == ("succeeded", "order 42: total 54")


def test_without_its_queue_line_the_snippet_works_on_canvasflows_app(
    control_worker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """canvasflow's app routes ``canvasflow.start`` to the control queue itself."""
    plain = "\n".join(line for line in SNIPPET.splitlines() if "queue=" not in line)
    assert plain != SNIPPET
    exec(plain, {"celery_app": app})
    record = Run(_reply(capsys.readouterr().out)["run_id"]).wait(60)
    assert (record.status, record.result) == ("succeeded", "order 42: total 54")
