"""A tracing middleware for worker tests: real spans, written as JSON to a Redis list.

Listed in ``CANVASFLOW_MIDDLEWARE`` of a test's workers
(``tests.integration.span_probe:RedisSpans``), it is canvasflow's own :class:`Tracing` with
one span processor more: each finished span is pushed, synchronously, to
``<key prefix>:test-spans`` on the state Redis, where the test reads it back with :func:`spans`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from canvasflow.workflows.telemetry.tracing import Tracing


def spans_key() -> str:
    from canvasflow.config.settings import get_settings

    return f"{get_settings().key_prefix}:test-spans"


def _hex(value: int | None, width: int) -> str | None:
    return None if value is None else f"{value:0{width}x}"


def as_json(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "trace_id": _hex(ctx.trace_id, 32),
        "span_id": _hex(ctx.span_id, 16),
        "parent_id": _hex(span.parent.span_id, 16) if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }


class _RedisExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from canvasflow.workflows.runtime.context import runtime

        runtime().redis.rpush(spans_key(), *(json.dumps(as_json(s)) for s in spans))
        return SpanExportResult.SUCCESS


class RedisSpans(Tracing):
    def __init__(self) -> None:
        super().__init__(exporter="none", processors=[SimpleSpanProcessor(_RedisExporter())])


def spans(run_trace_id: str) -> list[dict[str, Any]]:
    """Every span the probe recorded so far in the trace ``run_trace_id`` (hex)."""
    from canvasflow.workflows.runtime.context import runtime

    raw = runtime().redis.lrange(spans_key(), 0, -1)
    found = [json.loads(r) for r in raw]  # type: ignore[union-attr]
    return [s for s in found if s["trace_id"] == run_trace_id]
