"""The built-in middleware the settings switch on: metrics, traces, the event stream.

``CANVASFLOW_METRICS=true``, ``CANVASFLOW_TRACING=console|otlp`` and ``CANVASFLOW_EVENTS=true``
each add one middleware in every process, after those ``CANVASFLOW_MIDDLEWARE`` lists (a class
listed there as well is not added twice). The composition root (``canvasflow.app``) hands
:func:`from_settings` to the registry (``registry.use_builtins``).
"""

from __future__ import annotations

from collections.abc import Iterable

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import Settings
from canvasflow.workflows.telemetry.events import EventStream
from canvasflow.workflows.telemetry.hooks import Middleware
from canvasflow.workflows.telemetry.metrics import Metrics, metrics_dir


def from_settings(s: Settings, present: Iterable[Middleware] = ()) -> list[Middleware]:
    """The built-ins ``s`` enables that are not already among ``present``."""
    have = {type(m) for m in present}
    out: list[Middleware] = []
    if s.metrics and Metrics not in have:
        out.append(Metrics(metrics_dir(s)))
    if s.events and EventStream not in have:
        out.append(EventStream(prefix=s.key_prefix, maxlen=s.events_maxlen))
    if s.tracing != "none":
        try:
            # OpenTelemetry is an optional extra (canvasflow[otel]): imported only when tracing is on
            from canvasflow.workflows.telemetry.tracing import Tracing

            if not any(issubclass(t, Tracing) for t in have):
                out.append(Tracing(exporter=s.tracing))  # the otlp exporter is imported here
        except ImportError as exc:
            raise SettingsError(
                f"CANVASFLOW_TRACING={s.tracing} needs OpenTelemetry ({exc}): "
                "pip install 'canvasflow[otel]', or set CANVASFLOW_TRACING=none"
            ) from None
    return out
