"""once(connection) under real kills: a step whose worker is SIGKILLed after its effect committed
runs again, and the effect is in the application's database once."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
import redis
import sqlalchemy as sa
from celery import chain

from canvasflow.workflows import Workflow, start
from tests.faults.outage import MODULES
from tests.faults.steps import counts, ship_once, tick
from tests.faults.test_killed_workers import QUEUES, running_step, wait_for
from tests.integration.saga import act

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.faults, pytest.mark.usefixtures("broker")]
ENV = {"CANVASFLOW_WORKFLOW_MODULES": MODULES}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app_db(request: pytest.FixtureRequest, tmp_path) -> str:
    """The application's own database (not canvasflow's journal), with its ``effects`` table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS effects"))
        conn.execute(sa.text("DROP TABLE IF EXISTS canvasflow_once"))
        conn.execute(sa.text("CREATE TABLE effects (key TEXT, what TEXT, attempt INTEGER)"))
    engine.dispose()
    return url


def rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(sa.text(sql))]
    engine.dispose()
    return found


@pytest.mark.parametrize("kill", ["pool process", "whole worker"])
def test_a_step_killed_after_its_effect_committed_runs_again_and_the_effect_is_there_once(
    app_db, redis_url, celery_worker_factory, kill
):
    first = celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=ENV)
    counter = f"counter:{uuid.uuid4().hex}"
    ship = ship_once.s(label="ship", db_url=app_db, hold=30.0, counter=counter, counter_url=redis_url)
    before = tick.s(label="reserve", counter=counter, counter_url=redis_url)
    after = tick.s(label="notify", counter=counter, counter_url=redis_url)
    name = Workflow(f"t.once.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(before, ship, after)).name
    run = start(name)

    # the effect and its key committed; the step is still running (holding): kill it now
    wait_for(lambda: rows(app_db, "SELECT what FROM effects"), timeout=60)
    info = running_step(run.id, "1.ship_once")
    assert info, "the step should still be running after its commit"
    if kill == "pool process":
        os.kill(info["pid"], signal.SIGKILL)
    else:
        first.kill_group(signal.SIGKILL)
        celery_worker_factory(queues=QUEUES, concurrency=1, extra_env=ENV)

    record = run.wait(120)
    assert record.status == "succeeded", record.error
    assert record.step("1.ship_once").attempts == 2  # the body ran again ...
    assert counts(redis_url, counter) == {"reserve": 1, "ship": 2, "notify": 1}
    key = f"{run.id}:1.ship_once:1"
    assert rows(app_db, "SELECT key, what, attempt FROM effects") == [(key, "ship", 1)]  # ... the effect once
    assert rows(app_db, "SELECT key, run_id, step_id FROM canvasflow_once") == [(key, run.id, "1.ship_once")]


def test_a_compensation_killed_after_its_effect_committed_runs_again_and_the_undo_is_there_once(
    app_db, redis_url, celery_worker_factory
):
    celery_worker_factory(queues=QUEUES, concurrency=2, extra_env=ENV)
    counter = f"counter:{uuid.uuid4().hex}"
    ship = ship_once.s(
        label="ship", db_url=app_db, hold=0.0, undo_hold=30.0, counter=counter, counter_url=redis_url
    )
    fail = act.s(label="pay", log=f"log:{uuid.uuid4().hex}", fail=True)
    run = start(Workflow(f"t.once.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(ship, fail)).name)

    # the undo and its key committed; the compensation still holds: kill its process
    pid = wait_for(lambda: redis.Redis.from_url(redis_url).hget(f"{counter}:pid", "undo:ship"), timeout=60)
    os.kill(int(pid), signal.SIGKILL)

    record = run.wait(120)
    assert record.status == "compensated", record.error
    assert counts(redis_url, counter) == {"ship": 1, "undo:ship": 2}  # the compensation ran again ...
    undo_key = f"{run.id}:0.ship_once:undo"
    effects = rows(app_db, "SELECT key, what FROM effects ORDER BY what")
    assert effects == [(f"{run.id}:0.ship_once:1", "ship"), (undo_key, "undo:ship")]  # ... the undo once
    keys = rows(app_db, "SELECT key, run_id, step_id FROM canvasflow_once ORDER BY key")
    assert keys == [(f"{run.id}:0.ship_once:1", run.id, "0.ship_once"), (undo_key, run.id, "0.ship_once")]
