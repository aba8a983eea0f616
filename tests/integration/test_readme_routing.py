"""The README's "Engines and routing" example, run as written with one worker per engine."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from canvasflow import start
from tests.integration.test_routing import wait_live

pytestmark = [pytest.mark.redis, pytest.mark.worker]

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```python\n# ocrapp/steps\.py\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def ocrapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ocrapp")
    (root / "ocrapp").mkdir()
    (root / "ocrapp" / "__init__.py").write_text("")
    (root / "ocrapp" / "steps.py").write_text(BLOCK.findall(README.read_text())[0])
    sys.path.insert(0, str(root))
    importlib.import_module("ocrapp.steps")
    yield root
    sys.path.remove(str(root))


def test_the_two_engine_example_spreads_pages_and_keeps_scans_on_the_gpu(celery_worker_factory, ocrapp):
    modules = [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "ocrapp.steps"]
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ocrapp), os.environ.get("PYTHONPATH")])),
        "CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules),
        "CANVASFLOW_ENGINE_HEARTBEAT_INTERVAL": "0.5",
    }
    for engine in ("gpu", "cpu"):
        queues = [f"cap.ocr.{engine}", "cap.ocr", "canvasflow", "canvasflow.control"]
        celery_worker_factory(queues=queues, extra_env=env)
    wait_live({"ocr/gpu", "ocr/cpu"})

    book = start("ocrapp.book", {"pages": 20}).wait(60)
    assert book.status == "succeeded", book.error
    used = Counter(page["engine"] for page in book.result)
    assert used["gpu"] >= 6 and used["cpu"] >= 6, used

    scans = start("ocrapp.scans", {"pages": 6}).wait(60)
    assert scans.status == "succeeded", scans.error
    assert {page["engine"] for page in scans.result} == {"gpu"}
    assert {s.route["strategy"] for s in scans.steps} == {"resource_aware"}
