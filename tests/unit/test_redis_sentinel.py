"""Redis Sentinel URLs: the state Redis (``redis+sentinel://``), Celery's broker and result backend
(``sentinel://``), and the master name they share (``CANVASFLOW_SENTINEL_MASTER``)."""

from __future__ import annotations

import pytest
import redis
from celery import Celery
from redis.sentinel import SentinelConnectionPool

from canvasflow.config.brokers import broker_options, result_backend_options
from canvasflow.config.celery_app import adopt
from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import load_settings

SENTINELS = "127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381"
CELERY_FORM = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380;sentinel://127.0.0.1:26381/2"


def test_a_state_url_without_master_name_takes_the_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANVASFLOW_STATE_URL", f"redis+sentinel://{SENTINELS}/1")
    clean_env.setenv("CANVASFLOW_SENTINEL_MASTER", "orders")
    assert load_settings().redis_state_url == f"redis+sentinel://{SENTINELS}/1?master_name=orders"


def test_a_master_name_in_the_url_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANVASFLOW_STATE_URL", f"redis+sentinel://{SENTINELS}/0?master_name=state")
    clean_env.setenv("CANVASFLOW_SENTINEL_MASTER", "orders")
    assert load_settings().redis_state_url.endswith("?master_name=state")


def test_the_state_follows_a_sentinel_result_backend(clean_env: pytest.MonkeyPatch) -> None:
    """No state URL: the state lives where Celery's sentinel:// result backend does."""
    clean_env.setenv("CANVASFLOW_RESULT_BACKEND", CELERY_FORM)
    assert load_settings().redis_state_url == f"redis+sentinel://{SENTINELS}/2?master_name=mymaster"


def test_the_client_asks_the_sentinels_for_the_primary() -> None:
    client = state_client(f"redis+sentinel://:secret@{SENTINELS}/3?master_name=orders", socket_timeout=1)
    pool = client.connection_pool
    assert isinstance(client, redis.Redis) and isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "orders"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "secret"
    assert [(c.connection_pool.connection_kwargs["port"]) for c in pool.sentinel_manager.sentinels] == [
        26379,
        26380,
        26381,
    ]


def test_broker_and_result_backend_get_the_master_name(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings(broker_url=CELERY_FORM, result_backend=CELERY_FORM, sentinel_master="orders")
    options = broker_options(s)
    assert options["broker_transport"].endswith("redis_transport:SentinelTransport")
    assert options["broker_transport_options"]["master_name"] == "orders"
    assert options["broker_transport_options"]["visibility_timeout"] == s.visibility_timeout
    assert result_backend_options(s, s.result_backend) == {"master_name": "orders"}
    assert (
        "master_name"
        not in broker_options(load_settings(broker_url="redis://h:6379/0"))["broker_transport_options"]
    )


def test_an_adopted_app_on_sentinel_gets_the_master_name_and_keeps_its_own() -> None:
    theirs = Celery("theirs", broker=CELERY_FORM, backend=CELERY_FORM, set_as_current=False)
    theirs.conf.result_backend_transport_options = {"master_name": "their-results"}
    adopt(theirs, load_settings(sentinel_master="orders"))
    assert theirs.conf.broker_transport_options["master_name"] == "orders"
    assert theirs.conf.result_backend_transport_options == {"master_name": "their-results"}
