"""The Celery app every worker, client and test uses: ``config.celery_app:app``.

Production settings: JSON only, late acks with rejection on worker loss (a killed worker's
step is redelivered), prefetch of one by default, result expiry, explicit queues.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from celery import Celery
from celery.signals import setup_logging

from canvasflow.config.brokers import broker_options
from canvasflow.config.errors import BrokerUnavailable
from canvasflow.config.logging import configure_logging
from canvasflow.config.queues import declare_queues
from canvasflow.config.settings import Settings, get_settings

RUNTIME_MODULES = ["canvasflow.workers.demo", "canvasflow.workflows.tasks", "canvasflow.compensation.tasks"]


def configure(celery: Celery, s: Settings) -> None:
    """Apply settings to the app (again, when settings change before the app is first used)."""
    celery.conf.update(
        broker_url=s.broker_url,
        result_backend=s.result_backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=s.prefetch_multiplier,
        result_expires=s.result_expires,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=s.broker_timeout,
        redis_socket_connect_timeout=s.broker_timeout,
        redis_backend_health_check_interval=30,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        task_default_queue=s.default_queue,
        task_queues=declare_queues(s.default_queue, s.control_queue, s.capabilities),
        task_create_missing_queues=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        imports=[*RUNTIME_MODULES, *s.workflow_modules],
        timezone="UTC",
        enable_utc=True,
    )
    celery.conf.update(broker_options(s))  # Redis- or RabbitMQ-only settings: config/brokers.py


app = Celery("canvasflow")
configure(app, get_settings())


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    s = get_settings()
    configure_logging(s.log_format, s.log_level)


def redact(url: str) -> str:
    """The URL with any password replaced, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def check_broker(timeout: float | None = None) -> None:
    """Raise BrokerUnavailable, naming the URL, when the broker does not answer within ``timeout``."""
    wait = get_settings().broker_timeout if timeout is None else timeout
    url = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=wait)
    except Exception as exc:  # kombu raises several transport-specific errors
        raise BrokerUnavailable(
            f"broker {redact(url)} did not answer within {wait:g}s ({exc.__class__.__name__}: {exc}); "
            "start the broker (Redis or RabbitMQ) there or set CANVASFLOW_BROKER_URL to one that runs"
        ) from None
