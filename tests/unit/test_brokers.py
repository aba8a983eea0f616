"""Broker-specific settings: Redis transport options only for Redis URLs, production options
for RabbitMQ, applied by ``configure`` to an app."""

from __future__ import annotations

import pytest
from celery import Celery

from canvasflow.config.brokers import AMQP_HEARTBEAT_S, broker_kind, broker_options
from canvasflow.config.celery_app import configure
from canvasflow.config.local_redis import is_redis_url
from canvasflow.config.settings import load_settings


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://:pw@cache.example:6380/0?ssl_cert_reqs=required", "redis"),
        ("sentinel://s1:26379;sentinel://s2:26379", "redis"),
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp"),
        ("amqps://user:pw@mq.example:5671/prod", "amqp"),
        ("pyamqp://guest@localhost//", "amqp"),
        ("memory://", "other"),
        ("sqs://", "other"),
    ],
)
def test_broker_kind_follows_the_scheme(url: str, kind: str) -> None:
    assert broker_kind(url) == kind


def test_is_redis_url_only_for_redis_schemes() -> None:
    assert is_redis_url("redis://x/0") and is_redis_url("rediss://x/0") and is_redis_url("unix:///tmp/r.sock")
    assert not is_redis_url("amqp://guest:guest@127.0.0.1:5672//") and not is_redis_url(None)


def test_redis_broker_gets_visibility_timeout_and_restore_options() -> None:
    s = load_settings(broker_url="redis://127.0.0.1:6379/3", visibility_timeout=120)
    options = broker_options(s)["broker_transport_options"]
    assert options["visibility_timeout"] == 120
    assert options["unacked_restore_interval"] == s.unacked_restore_interval
    assert "confirm_publish" not in options


def test_rabbitmq_broker_gets_confirms_and_heartbeats_and_no_redis_options() -> None:
    s = load_settings(broker_url="amqps://user:pw@mq.example:5671/prod")
    options = broker_options(s)
    assert options["broker_transport_options"] == {"confirm_publish": True}
    assert options["broker_heartbeat"] == AMQP_HEARTBEAT_S
    assert options["worker_cancel_long_running_tasks_on_connection_loss"] is True


def test_configure_switches_the_options_with_the_broker() -> None:
    app = Celery("probe", set_as_current=False)
    configure(app, load_settings(broker_url="redis://127.0.0.1:6379/3", visibility_timeout=77))
    assert app.conf.broker_transport_options["visibility_timeout"] == 77
    configure(app, load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost  # the common ones stay


def test_priorities_redis_states_its_lanes_and_rabbitmq_declares_x_max_priority_only_when_asked() -> None:
    redis_options = broker_options(load_settings(broker_url="redis://127.0.0.1:6379/3"))
    assert redis_options["broker_transport_options"]["priority_steps"] == [0, 3, 6, 9]
    plain = Celery("probe", set_as_current=False)
    configure(plain, load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert plain.amqp.queues["cap.default"].queue_arguments in (None, {})  # existing queues stay declarable
    app = Celery("probe", set_as_current=False)
    configure(app, load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672//", queue_max_priority=9))
    assert app.amqp.queues["cap.default"].queue_arguments == {"x-max-priority": 9}
    assert app.amqp.queues["cap.ocr.gpu"].queue_arguments == {"x-max-priority": 9}  # made on demand
