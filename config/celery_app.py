"""The Celery app canvasflow uses: its own (``app``, for ``celery -A canvasflow.app``) or yours.

Production settings: JSON only, late acks with rejection on worker loss (a killed worker's
step is redelivered), prefetch of one by default, result expiry, explicit queues.

Every module that needs the app at call time asks :func:`current_app`: canvasflow's own
``app`` until ``init_app`` (``canvasflow.app``, the composition root) adopts an existing
application (:func:`adopt`, :func:`set_app`), which then stays the project's default app too.
Tasks canvasflow declares (``@step``, ``@compensates``, its runtime tasks) are Celery "shared"
tasks, so an app finalized after they were declared gets them as well; ``init_app`` hands them
to an app already finalized.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError

from canvasflow.config.brokers import broker_kind, broker_options, result_backend_options
from canvasflow.config.deadletters import DeadLetters
from canvasflow.config.errors import BrokerUnavailable, SettingsError, first_line, reads_as
from canvasflow.config.logging import configure_logging
from canvasflow.config.queues import capability_route, queue_for
from canvasflow.config.settings import Settings, get_settings, redact

# imported by every worker, also of a project's app that init_app adopted: the composition root
# (canvasflow's Celery tasks, the rollback listener, the telemetry built-ins), then the task
# modules it imports, named too so that the app's imports still show where the tasks come from
RUNTIME_MODULES = ["canvasflow.app", "canvasflow.workflows.tasks", "canvasflow.compensation.tasks"]
# the demo's steps and workflows: only for `canvasflow demo`, `canvasflow worker --demo` and tests
DEMO_MODULES = ["canvasflow.workers.demo", "canvasflow.workflows.demo"]
START_TASK = "canvasflow.start"
# runtime tasks that only ever run on the control queue (countdown deadlines, beat's scheduled starts)
DEADLINE_TASK = "canvasflow.deadline"
SCHEDULED_TASK = "canvasflow.start_scheduled"


def worker_imports(s: Settings) -> list[str]:
    """What a worker imports: the runtime, then ``worker_modules`` when set, else every module named."""
    named = s.worker_modules
    if named is None:
        named = [*s.workflow_modules, *(m for mods in s.capability_modules.values() for m in mods)]
    return list(dict.fromkeys([*RUNTIME_MODULES, *named]))


# canvasflow's tasks that run on the control queue (by task_routes: Celery deprecates the task
# class's ``queue`` attribute); the names are those of workflows/tasks.py and conversation.py
CONTROL_TASKS = (START_TASK, "canvasflow.subworkflow", "canvasflow.send_signal")
# every task the control queue's route names: the control steps and the runtime's own control tasks
CONTROL_ROUTED = (*CONTROL_TASKS, DEADLINE_TASK, SCHEDULED_TASK)


def declare_queues(default_queue: str, control_queue: str, capabilities: Iterable[str]) -> list[Queue]:
    """Every queue canvasflow publishes to, declared explicitly (direct exchange per queue name)."""
    names = [default_queue, control_queue, *(queue_for(c) for c in capabilities)]
    unique = list(dict.fromkeys(names))
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in unique]


def routes(s: Settings) -> dict[str, dict[str, str]]:
    """canvasflow's task routes: a plain ``send_task("canvasflow.start")`` reaches a control worker,
    as do sub-workflow and send-signal steps, deadlines and beat's scheduled starts (none of
    canvasflow's tasks sets Celery's deprecated ``queue`` attribute)."""
    return {name: {"queue": s.control_queue} for name in CONTROL_ROUTED}


configurations = 0  # how many times configure() ran (graphs compiled before may differ now)


def configure(celery: Celery, s: Settings) -> None:
    """Apply settings to canvasflow's own app (again, when settings change before first use)."""
    global configurations
    configurations += 1
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
        task_routes=[routes(s), capability_route],
        task_create_missing_queues=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        imports=worker_imports(s),
        timezone="UTC",
        enable_utc=True,
    )
    celery.conf.update(broker_options(s))  # Redis- or RabbitMQ-only settings: config/brokers.py
    celery.conf.result_backend_transport_options = result_backend_options(s, s.result_backend)
    celery.steps["consumer"].add(DeadLetters)
    if s.security_key or s.security_certificate or s.security_cert_store:
        sign_messages(celery, s)


def sign_messages(celery: Celery, s: Settings) -> None:
    """Sign every task message (Celery's ``auth`` serializer); accept only signed ones.

    Results and events stay JSON (Flower reads events without the keys)."""
    if not (s.security_key and s.security_certificate and s.security_cert_store):
        raise SettingsError(
            "message signing needs CANVASFLOW_SECURITY_KEY, CANVASFLOW_SECURITY_CERTIFICATE and "
            "CANVASFLOW_SECURITY_CERT_STORE together (a private key, its certificate, a glob of trusted ones)"
        )
    celery.conf.update(
        security_key=s.security_key,
        security_certificate=s.security_certificate,
        security_cert_store=s.security_cert_store,
        security_digest="sha256",
        task_serializer="auth",
        accept_content=["auth"],
    )
    try:
        celery.setup_security(allowed_serializers=["json", "application/json"], serializer="json")
    except Exception as exc:  # ImportError (no cryptography), a file that is missing or not PEM
        raise SettingsError(
            f"message signing could not be set up ({type(exc).__name__}: {exc}): check the files named "
            "by CANVASFLOW_SECURITY_KEY/CERTIFICATE/CERT_STORE and pip install 'canvasflow[signing]'"
        ) from None


def _merged(theirs: Iterable[Any] | None, ours: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys([*(theirs or ()), *ours]))


def adopt(celery: Celery, s: Settings) -> None:
    """Add what canvasflow needs to an existing app, keeping its broker, routes, queues and tasks.

    Its broker and result backend stay (canvasflow's settings fill them only when unset);
    JSON is what its tasks send and accept, besides what it accepted already; canvasflow's
    queues join its own (its default queue included, so its worker still consumes it); the
    ``canvasflow.start`` route comes after its routes; its imports come first. Late acks and
    rejection on worker loss are set on canvasflow's tasks themselves (see StepTask), so the
    app's other tasks keep their acknowledgement policy.
    """
    conf = celery.conf
    default_queue = conf.task_default_queue or "celery"
    theirs = list(conf.task_queues or [])
    known = {q.name for q in theirs}
    ours = [q for q in declare_queues(default_queue, s.control_queue, s.capabilities) if q.name not in known]
    if s.queue_max_priority and broker_kind(conf.broker_url or s.broker_url) == "amqp":
        declared: list[Any] = ours  # kombu's Queue: queue_arguments is untyped
        for q in declared:  # canvasflow's queues only: the app's own keep their declaration
            q.queue_arguments = {**(q.queue_arguments or {}), "x-max-priority": s.queue_max_priority}
    existing_routes = conf.task_routes
    if existing_routes is None:
        route_list: list[Any] = []
    elif isinstance(existing_routes, dict | str) or callable(existing_routes):
        route_list = [existing_routes]
    else:
        route_list = list(existing_routes)
    broker_url = conf.broker_url or s.broker_url
    for_broker = broker_options(s.model_copy(update={"broker_url": broker_url}))
    ours_transport = for_broker["broker_transport_options"]
    conf.update(
        broker_url=broker_url,
        result_backend=conf.result_backend or s.result_backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=_merged(conf.accept_content, ["json"]),
        result_accept_content=_merged(conf.result_accept_content or conf.accept_content, ["json"]),
        event_serializer="json",
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={**ours_transport, **(conf.broker_transport_options or {})},
        broker_transport=conf.broker_transport or for_broker.get("broker_transport"),
        result_backend_transport_options={
            **result_backend_options(s, conf.result_backend or s.result_backend),
            **(conf.result_backend_transport_options or {}),
        },
        task_queues=[*theirs, *ours],
        task_routes=[  # once each
            *route_list,
            *([] if routes(s) in route_list else [routes(s)]),
            *([] if capability_route in route_list else [capability_route]),
        ],
        task_create_missing_queues=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        imports=_merged(conf.imports, worker_imports(s)),
    )
    celery.steps["consumer"].add(DeadLetters)
    if s.security_key or s.security_certificate or s.security_cert_store:
        sign_messages(celery, s)


app = Celery("canvasflow")
# a bad setting is not an import error: the CLI, or a worker's next get_settings(), reports it
# (signing files that cannot be read are: a worker must not start without its keys)
_settings: Settings | None = None
with contextlib.suppress(SettingsError):
    _settings = get_settings()
if _settings is not None:
    configure(app, _settings)
_adopted: list[Celery] = []  # the app init_app adopted, if any (a list: no `global` statement)


def current_app() -> Celery:
    """The app canvasflow declares tasks on and sends with: the one ``init_app`` adopted, else ``app``."""
    return _adopted[-1] if _adopted else app


def set_app(celery: Celery | None) -> None:
    """Make ``celery`` canvasflow's current app (None: back to canvasflow's own)."""
    _adopted.clear()
    if celery is not None and celery is not app:
        _adopted.append(celery)


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    s = get_settings()
    configure_logging(s.log_format, s.log_level)


@reads_as
def broker_down(exc: BaseException) -> BrokerUnavailable | None:
    """kombu's OperationalError: the current app's broker does not answer."""
    if not isinstance(exc, OperationalError):
        return None
    return BrokerUnavailable(
        f"the broker {redact(str(current_app().conf.broker_url))} does not answer "
        f"({first_line(exc)}): start it or set CANVASFLOW_BROKER_URL"
    )


def check_broker(timeout: float | None = None) -> None:
    """Raise BrokerUnavailable, naming the URL, when the broker does not answer within ``timeout``."""
    wait = get_settings().broker_timeout if timeout is None else timeout
    celery = current_app()
    url = celery.conf.broker_url
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=wait)
    except Exception as exc:  # kombu raises several transport-specific errors
        raise BrokerUnavailable(
            f"broker {redact(url)} did not answer within {wait:g}s ({exc.__class__.__name__}: {exc}); "
            "start the broker (Redis or RabbitMQ) there or set CANVASFLOW_BROKER_URL to one that runs"
        ) from None
