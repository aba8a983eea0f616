"""The built-in middleware the settings switch on: metrics, traces, the event stream.

``CANVASFLOW_METRICS=true``, ``CANVASFLOW_TRACING=console|otlp`` and ``CANVASFLOW_EVENTS=true``
each add one middleware in every process, after those ``CANVASFLOW_MIDDLEWARE`` lists (a class
listed there as well is not added twice).
"""

from __future__ import annotations

from collections.abc import Iterable

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import Settings
from canvasflow.workflows.telemetry.hooks import Middleware


def from_settings(s: Settings, present: Iterable[Middleware] = ()) -> list[Middleware]:
    """The built-ins ``s`` enables that are not already among ``present``."""
    have = {type(m) for m in present}
    out: list[Middleware] = []
    if s.metrics:
        from canvasflow.workflows.telemetry.metrics import Metrics, metrics_dir

        if Metrics not in have:
            out.append(Metrics(metrics_dir(s)))
    if s.events:
        from canvasflow.workflows.telemetry.events import EventStream

        if EventStream not in have:
            out.append(EventStream(prefix=s.key_prefix, maxlen=s.events_maxlen))
    if s.tracing != "none":
        try:
            from canvasflow.workflows.telemetry.tracing import Tracing

            if not any(issubclass(t, Tracing) for t in have):
                out.append(Tracing(exporter=s.tracing))
        except ImportError as exc:
            raise SettingsError(
                f"CANVASFLOW_TRACING={s.tracing} needs OpenTelemetry ({exc}): "
                "pip install 'canvasflow[otel]', or set CANVASFLOW_TRACING=none"
            ) from None
    return out
