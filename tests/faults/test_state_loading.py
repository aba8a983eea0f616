"""get_run while the state Redis cannot answer: loading its data set (``LOADING``, redis-py's
BusyLoadingError) or refusing connections, it returns the journal's record, not an exception."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from celery import chain

from canvasflow.workflows import Workflow, get_run, start
from tests.faults.outage import PrivateRedis, redis_env, settings_env
from tests.faults.steps import tick

pytestmark = [pytest.mark.redis, pytest.mark.faults]


def loading(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.exceptions.BusyLoadingError:
        return True
    except redis.RedisError:
        pass
    return False


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis", "rdb", ("--enable-debug-command", "yes")).start()
    yield server
    server.stop()


def active_run(redis_url: str) -> str:
    """A run that stays `running`: its first step's message waits for a worker nobody started."""
    step = tick.s(label="a", counter=f"counter:{uuid.uuid4().hex}", counter_url=redis_url)
    name = Workflow(f"t.loading.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(step, step)).name
    return start(name).id


def test_get_run_while_redis_loads_its_data_set_returns_the_journals_record(private_redis, redis_url):
    with settings_env(**redis_env(private_redis.url())):
        run_id = active_run(redis_url)
        assert get_run(run_id).status == "running"
        admin = redis.Redis.from_url(private_redis.url(), socket_timeout=60)
        # enough data, loaded slowly, answering LOADING between keys: a reload takes seconds
        admin.execute_command("DEBUG", "POPULATE", 40_000, "filler", 200)
        admin.config_set("key-load-delay", 100)  # µs per key while loading (a test-only knob)
        admin.config_set("loading-process-events-interval-bytes", 1024)
        reload = threading.Thread(target=admin.execute_command, args=("DEBUG", "RELOAD"), daemon=True)
        reload.start()
        deadline = time.monotonic() + 20
        while not loading(private_redis.url()):
            assert time.monotonic() < deadline, "redis-server never answered LOADING"
            time.sleep(0.01)

        began = time.monotonic()
        record = get_run(run_id)  # redis-py raised BusyLoadingError here
        answered_within = time.monotonic() - began
        assert loading(private_redis.url()), "Redis finished loading before get_run was tested"
        assert record.id == run_id and record.status == "running"
        assert [s.step_id for s in record.steps] == ["0.tick", "1.tick"]
        assert answered_within < 5
        reload.join(60)
        assert get_run(run_id).status == "running"  # and from Redis again once it is loaded


def test_get_run_while_redis_refuses_connections_returns_the_journals_record(private_redis, redis_url):
    with settings_env(**redis_env(private_redis.url())):
        run_id = active_run(redis_url)
        private_redis.stop()
        record = get_run(run_id)
        assert record.id == run_id and record.status == "running"
        assert [s.step_id for s in record.steps] == ["0.tick", "1.tick"]
