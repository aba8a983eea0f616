"""``init_app`` in this process: an app already finalized still gets canvasflow's tasks, and
steps declared afterwards land on it. canvasflow's own app is made current again after."""

from __future__ import annotations

from collections.abc import Iterator

import celery
import pytest
from celery import Celery

from canvasflow.app import init_app
from canvasflow.config.celery_app import app, current_app, set_app
from canvasflow.workers.step import step


@pytest.fixture
def restore_app() -> Iterator[None]:
    yield
    set_app(None)
    app.set_default()
    app.set_current()


def test_an_app_finalized_before_init_app_gets_the_tasks_declared_meanwhile(restore_app: None) -> None:
    theirs = Celery("late", set_as_current=False)
    theirs.finalize()  # from here on, finalization no longer hands it canvasflow's shared tasks

    @step(name="tests.init_app.early_step", capability="late")
    def early_step(x: int) -> int:
        return x

    assert early_step.app is app and "tests.init_app.early_step" not in theirs.tasks
    assert init_app(theirs) is theirs
    assert {"tests.init_app.early_step", "canvasflow.start", "canvasflow.step_failed"} <= set(theirs.tasks)
    assert current_app() is theirs and celery.current_app.main == "late"

    @step(name="tests.init_app.late_step", capability="late")
    def late_step(x: int) -> int:
        return x

    assert late_step.app is theirs and "tests.init_app.late_step" in theirs.tasks
    assert late_step(3) == 3


def test_set_app_none_goes_back_to_canvasflows_own(restore_app: None) -> None:
    init_app(Celery("other", set_as_current=False))
    set_app(None)
    assert current_app() is app
