"""The composition root: what a process needs to run canvasflow, put together once.

``celery -A canvasflow.app worker`` (and ``flower``, ``inspect``) loads it for canvasflow's own
Celery ``app``; :func:`init_app` hands the same to a project's own app, whose workers import
this module too (``RUNTIME_MODULES`` in config/celery_app.py). Importing it, once per process:

* imports the modules that declare the runtime's Celery tasks and the worker-side signal
  handlers (so every worker has ``canvasflow.start``, ``canvasflow.chunk``, ...);
* registers the rollback (``compensation/subscriber.py``) as the core listener of the
  runtime's control events;
* hands the telemetry built-ins the settings switch on (metrics, tracing, the event stream) to
  the middleware registry, which builds them with the settings' middleware on first use.

The client (``canvasflow.workflows.client``) imports it, so a service that only starts runs is
put together the same way. Below it, no module registers anything when imported.
"""

from __future__ import annotations

from celery import Celery, _state

import canvasflow.compensation.tasks
import canvasflow.workers.signals
import canvasflow.workflows.runs.schedule_beat
import canvasflow.workflows.runtime.deadlines
import canvasflow.workflows.tasks  # noqa: F401
from canvasflow.compensation.subscriber import ROLLBACK
from canvasflow.config.celery_app import adopt, app, set_app
from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.telemetry import builtin, registry

registry.add_middleware(ROLLBACK, core=True)
registry.use_builtins(builtin.from_settings)


def init_app(celery: Celery, settings: Settings | None = None) -> Celery:
    """Run canvasflow on an existing Celery application, which stays the project's default app.

    Adds canvasflow's settings where they matter (see ``config.celery_app.adopt``), registers
    canvasflow's runtime tasks on it, and makes it the app ``@step`` declares steps on. Call it
    where the app is created, so that ``celery -A yourproject worker`` runs it.
    """
    adopt(celery, settings or get_settings())
    set_app(celery)
    celery.set_default()
    celery.set_current()
    if celery.finalized:  # too late for finalization to hand it the shared tasks: hand them now
        for constructor in list(_state._on_app_finalizers):
            if constructor.__module__ != "celery.app.builtins":  # it has those; they'd be built anew
                constructor(celery)
    return celery


__all__ = ["app", "init_app"]
