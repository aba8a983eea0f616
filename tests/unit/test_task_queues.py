"""No canvasflow task sets Celery's deprecated task attributes (``queue`` and its kin): Celery
5.x warns at every task's binding in every worker and 6.0 ignores them. Control tasks reach
the control queue through canvasflow's ``task_routes`` instead."""

from __future__ import annotations

import importlib

import pytest
from celery import Task

from canvasflow.config.celery_app import CONTROL_ROUTED, DEMO_MODULES, RUNTIME_MODULES, app
from canvasflow.config.settings import load_settings

# the attributes Celery's Task.bind warns about (celery/app/task.py), less those binding itself
# fills in from the app's configuration (``priority`` from task_default_priority)
FILLED = {attr for attr, _ in Task.from_config}
DEPRECATED = [
    a
    for a in ("queue", "exchange", "exchange_type", "routing_key", "delivery_mode", "priority")
    if a not in FILLED
]


def _canvasflow_tasks() -> dict[str, type]:
    for module in [*RUNTIME_MODULES, *DEMO_MODULES]:
        importlib.import_module(module)
    app.finalize()
    found = {
        name: type(task)
        for name, task in app.tasks.items()
        if name.startswith("canvasflow.") or type(task).__module__.startswith("canvasflow.")
    }
    assert len(found) > 20, sorted(found)  # the runtime's tasks, the compensations', the demo's steps
    return found


def test_no_canvasflow_task_sets_a_deprecated_routing_attribute() -> None:
    assert "queue" in DEPRECATED
    offenders = {
        name: [attr for attr in DEPRECATED if attr in cls.__dict__]
        for name, cls in _canvasflow_tasks().items()
        if any(attr in cls.__dict__ for attr in DEPRECATED)
    }
    assert offenders == {}


@pytest.mark.parametrize("name", ["canvasflow.deadline", "canvasflow.start_scheduled", "canvasflow.start"])
def test_control_tasks_reach_the_control_queue_by_task_routes(name: str) -> None:
    assert name in CONTROL_ROUTED
    assert name in _canvasflow_tasks()
    route = app.amqp.router.route({}, name, args=(), kwargs={})
    assert route["queue"].name == load_settings().control_queue
