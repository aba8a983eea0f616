"""The README's examples are tests: its ``# myapp/...`` code blocks are written out as they
stand, imported here and by a real worker, and run both ways: on the worker and in-process
(canvasflow.testing.run_inline), which must agree. The saga fails, compensates, and its
refund runs once."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

from canvasflow.testing import run_inline
from canvasflow.workflows import registry, start
from canvasflow.workflows.runtime.context import runtime

pytestmark = [pytest.mark.redis, pytest.mark.worker]

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```python\n(# (myapp/\w+\.py)\n.*?)```", re.S)
QUEUES = ["cap.orders", "cap.pricing", "cap.payments", "cap.shipping", "canvasflow", "canvasflow.control"]


def readme_modules() -> dict[str, str]:
    """``path -> code`` of every README block that starts with ``# myapp/<name>.py``."""
    return {path: code for code, path in BLOCK.findall(README.read_text())}


@pytest.fixture(scope="module")
def readme_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme_app")
    blocks = readme_modules()
    assert set(blocks) == {"myapp/steps.py", "myapp/flows.py", "myapp/checkout.py"}
    (root / "myapp").mkdir()
    (root / "myapp" / "__init__.py").write_text("")
    for path, code in blocks.items():
        (root / path).write_text(code)
    sys.path.insert(0, str(root))
    # the demo has an ``order_total`` too: the README's, imported last, is the one registered
    # (the worker imports the configured modules in order, the README's last)
    registry.load()
    for module in ("myapp.flows", "myapp.checkout"):
        importlib.import_module(module)
    yield root
    sys.path.remove(str(root))


def readme_worker(factory, root: Path):  # type: ignore[no-untyped-def]
    modules = [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "myapp.flows", "myapp.checkout"]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules)}
    return factory(queues=QUEUES, extra_env=env)


def test_the_first_workflow_gives_the_same_result_on_a_worker_and_inline(celery_worker_factory, readme_app):
    readme_worker(celery_worker_factory, readme_app)
    record = start("order_total", {"order_id": 42}).wait(60)
    assert record.status == "succeeded" and record.result == 10 + 20 + 30
    inline = run_inline("order_total", {"order_id": 42})
    assert (inline.status, inline.result) == ("succeeded", record.result)
    assert [(s.step_id, s.status) for s in inline.steps] == [(s.step_id, s.status) for s in record.steps]


def test_the_saga_fails_compensates_and_refunds_once(celery_worker_factory, readme_app, capsys):
    worker = readme_worker(celery_worker_factory, readme_app)
    order = {"order": {"id": 7, "amount": 30}}
    record = start("checkout", order).wait(60)
    assert record.status == "compensated", record.error
    charge, ship = record.steps
    assert (charge.status, charge.compensation_status) == ("succeeded", "compensated")
    assert charge.result == {"order": 7, "charged": 30}
    assert ship.status == "failed" and record.error["message"] == "no courier available"
    events = [e["event"] for e in runtime().store.events(record.id) if e["step_id"] == charge.step_id]
    assert events.count("compensation.compensated") == 1
    assert worker.read_log().count("refunded 30 for order 7") == 1  # refund's print, in the worker's output

    inline = run_inline("checkout", order)
    assert inline.status == "compensated"
    assert [(s.status, s.compensation_status) for s in inline.steps] == [
        (s.status, s.compensation_status) for s in record.steps
    ]
    assert capsys.readouterr().out.count("refunded 30 for order 7") == 1
