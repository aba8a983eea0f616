"""OpenTelemetry traces as a middleware: one trace per run, a span per step and per compensation.

Needs the ``[otel]`` extra (``opentelemetry-api``, ``opentelemetry-sdk``, and for ``otlp`` the
HTTP exporter). Off unless configured: ``CANVASFLOW_TRACING=console|otlp`` (``otlp`` reads the
SDK's own ``OTEL_EXPORTER_OTLP_*`` variables, e.g. ``OTEL_EXPORTER_OTLP_ENDPOINT``), or a
subclass listed in ``CANVASFLOW_MIDDLEWARE`` that passes its own span processors.

The shape of a trace::

    run <workflow>                      (trace id and span id derived from the run id)
    ├── step <step id>                  (one per attempt, in the worker that ran it)
    ├── step <step id>
    └── compensate <step id>            (in the worker that ran the compensation)

**The run span across processes.** A run starts in one process (the client) and finishes in
another (the worker that completed its last step), and a span can only be recorded where it
ends. So the run span's identity is *derived*, not remembered: its trace id is a hash of the
run id, its span id a hash of the run id and generation (:func:`run_span_context`). Any
process can name it as a parent before it exists; the process that sees the run finish records
it with exactly those ids (an id generator that hands out the derived ids for that one span),
back-dated to the run's creation. A resumed run keeps its trace: each generation adds a run
span of its own.

**Across workers.** When a step is dispatched, the dispatching process writes a W3C
``traceparent`` naming the run span into the message's carrier (``StepEvent.carrier``, sent as
message headers); the worker that runs the step extracts it as the step span's parent. Where a
message carries none (a step re-dispatched by the recovery sweep), the derived context is the
same parent. While a step's body runs its span is the current span, so spans that step code
opens (an HTTP client's instrumentation) are its children.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import structlog
from celery.signals import task_postrun, worker_process_shutdown
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from canvasflow.config.settings import get_settings
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.telemetry.hooks import CompensationEvent, Middleware, RunEvent, StepEvent

log = structlog.get_logger("canvasflow.telemetry")
SERVICE = "canvasflow"
ATTR = "canvasflow."
_propagator = TraceContextTextMapPropagator()
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("canvasflow_forced_span_ids", default=None)


def _hashed(text: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big") or 1


def run_trace_id(run_id: str) -> int:
    """The 128-bit trace id of a run: the same in every process."""
    return _hashed(f"canvasflow-trace:{run_id}", 16)


def run_span_context(run_id: str, generation: int = 1) -> SpanContext:
    """The run span's context (one per generation), known before the span is recorded."""
    return SpanContext(
        trace_id=run_trace_id(run_id),
        span_id=_hashed(f"canvasflow-run:{run_id}:{generation}", 8),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class _RunIds(RandomIdGenerator):
    """Random ids, except for the run span, whose ids are derived (set just around its creation)."""

    def generate_trace_id(self) -> int:
        forced = _forced_ids.get()
        return forced[0] if forced else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced_ids.get()
        return forced[1] if forced else super().generate_span_id()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {ATTR + k: v for k, v in attributes.items() if v is not None and v != ""}


class Tracing(Middleware):
    """Records run, step and compensation spans; see the module's docstring for their shape."""

    def __init__(self, exporter: str | None = None, processors: Sequence[SpanProcessor] = ()) -> None:
        kind = exporter or get_settings().tracing
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE}), id_generator=_RunIds()
        )
        if kind == "console":
            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("canvasflow")
        self._open: dict[tuple[str, str], tuple[Any, object]] = {}
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(self.provider)  # step code's own spans land in the same place
        worker_process_shutdown.connect(self._flush, weak=False)
        task_postrun.connect(self._task_ended, weak=False)

    def _flush(self, **_: Any) -> None:
        self.provider.force_flush(5_000)

    def _task_ended(self, **_: Any) -> None:
        """A span still open when its task ends (a step now waiting for a signal) ends with it."""
        for key in list(self._open):
            span, token = self._open.pop(key)
            span.set_attribute(ATTR + "unfinished", True)
            span.end()
            if token is not None:
                with contextlib.suppress(Exception):
                    otel_context.detach(token)  # type: ignore[arg-type]

    # -- runs ------------------------------------------------------------------------------
    def on_run_finish(self, event: RunEvent) -> None:
        ctx = run_span_context(event.run_id, event.generation)
        start = event.at - (event.duration or 0.0)
        attributes = _clean(
            {
                "run_id": event.run_id,
                "workflow": event.workflow,
                "version": event.version,
                "generation": event.generation,
                "status": event.status,
                "parent_run_id": event.parent_run_id,
            }
        )
        token = _forced_ids.set((ctx.trace_id, ctx.span_id))
        try:
            span = self.tracer.start_span(
                f"run {event.workflow}",
                context=otel_context.Context(),
                attributes=attributes,
                start_time=_ns(start),
            )
        finally:
            _forced_ids.reset(token)
        if event.status not in ("succeeded", "cancelled"):
            message = (event.error or {}).get("message") or event.status
            span.set_status(Status(StatusCode.ERROR, str(message)))
        span.end(end_time=_ns(event.at))

    # -- steps -----------------------------------------------------------------------------
    def on_step_dispatch(self, event: StepEvent) -> None:
        parent = trace.set_span_in_context(NonRecordingSpan(run_span_context(event.run_id, event.generation)))
        _propagator.inject(event.carrier, context=parent)

    def _parent(self, event: StepEvent) -> otel_context.Context:
        if event.carrier.get("traceparent"):
            return _propagator.extract(event.carrier)
        return trace.set_span_in_context(NonRecordingSpan(run_span_context(event.run_id, event.generation)))

    def _step_span(self, event: StepEvent, start: float) -> Any:
        attributes = _clean(
            {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "task": event.task,
                "attempt": event.attempt,
                "generation": event.generation,
                "queue": event.queue,
                "worker": event.worker,
                "capability": event.capability,
                "engine": event.engine,
            }
        )
        name = event.step_id.split("#", 1)[0] + ("#chunk" if "#" in event.step_id else "")
        return self.tracer.start_span(
            f"step {name}",
            context=self._parent(event),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            start_time=_ns(start),
        )

    def on_step_start(self, event: StepEvent) -> None:
        span = self._step_span(event, event.at)
        token = otel_context.attach(trace.set_span_in_context(span))
        stale = self._open.pop((event.run_id, event.step_id), None)
        if stale is not None:  # a start without its end (a crash mid-step): end it, unlabelled
            stale[0].end()
        self._open[(event.run_id, event.step_id)] = (span, token)

    def _end_step(self, event: StepEvent, failed: bool) -> None:
        opened = self._open.pop((event.run_id, event.step_id), None)
        if opened is None:  # started in another process, or a failure reported by an errback
            span, token = self._step_span(event, event.at - (event.duration or 0.0)), None
        else:
            span, token = opened
        if event.worker:
            span.set_attribute(ATTR + "worker", event.worker)
        if failed:
            _record_error(span, event.error)
        if event.retry_in is not None:
            span.set_attribute(ATTR + "retry_in", event.retry_in)
        span.end(end_time=_ns(event.at))
        if token is not None:
            with contextlib.suppress(Exception):  # detached in another context: nothing to undo
                otel_context.detach(token)  # type: ignore[arg-type]

    def on_step_success(self, event: StepEvent) -> None:
        self._end_step(event, failed=False)

    def on_step_failure(self, event: StepEvent) -> None:
        self._end_step(event, failed=True)

    def on_step_retry(self, event: StepEvent) -> None:
        self._end_step(event, failed=True)

    # -- compensations ---------------------------------------------------------------------
    def _compensation_key(self, event: CompensationEvent) -> tuple[str, str]:
        return (event.run_id, f"compensate:{event.step_id}")

    def on_compensation_start(self, event: CompensationEvent) -> None:
        span = self._compensation_span(event, event.at)
        self._open[self._compensation_key(event)] = (span, None)

    def _compensation_span(self, event: CompensationEvent, start: float) -> Any:
        parent = trace.set_span_in_context(
            NonRecordingSpan(run_span_context(event.run_id, _generation(event.run_id)))
        )
        attributes = _clean(
            {
                "run_id": event.run_id,
                "step_id": event.step_id,
                "task": event.task,
                "attempt": event.attempt,
                "idempotency_key": event.idempotency_key,
                "worker": event.worker,
            }
        )
        return self.tracer.start_span(
            f"compensate {event.step_id}", context=parent, attributes=attributes, start_time=_ns(start)
        )

    def _end_compensation(self, event: CompensationEvent, failed: bool) -> None:
        opened = self._open.pop(self._compensation_key(event), None)
        span = opened[0] if opened else self._compensation_span(event, event.at - (event.duration or 0.0))
        if failed:
            _record_error(span, event.error)
        span.end(end_time=_ns(event.at))

    def on_compensation_success(self, event: CompensationEvent) -> None:
        self._end_compensation(event, failed=False)

    def on_compensation_failure(self, event: CompensationEvent) -> None:
        self._end_compensation(event, failed=True)


def _record_error(span: Any, error: dict[str, Any] | None) -> None:
    error = error or {}
    kind, message = str(error.get("type") or "Error"), str(error.get("message") or "")
    span.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": message,
            **({"exception.stacktrace": str(error["traceback"])} if error.get("traceback") else {}),
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"))


def _generation(run_id: str) -> int:
    """The run's current generation, from its Redis state (1 when it cannot be read)."""
    try:
        rt = runtime()
        raw = rt.redis.hget(rt.state.key(run_id, "meta"), "gen")
        return int(raw) if raw is not None else 1
    except Exception:
        return 1
