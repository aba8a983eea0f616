"""The tracing middleware with the SDK's in-memory exporter: the hooks of a chain and a chord are
emitted in the order the runtime emits them, and the spans must form one trace per run with
every step (and compensation) a child of the run span, carried across "processes" by the
dispatch carrier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from canvasflow.workflows.telemetry.hooks import (
    CompensationEvent,
    RunEvent,
    StepEvent,
)
from canvasflow.workflows.telemetry.registry import add_middleware, emit, remove_middleware
from canvasflow.workflows.telemetry.tracing import Tracing, run_span_context


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    mw = add_middleware(Tracing(exporter="none", processors=[SimpleSpanProcessor(exporter)]))
    yield exporter
    remove_middleware(mw)


def run_step(run_id: str, step_id: str, task: str, *, at: float, fail: bool = False) -> None:
    """Dispatch (one process), start and end (another: only the carrier travels)."""
    dispatched = StepEvent(run_id, step_id, task, queue="cap.demo", at=at)
    emit("on_step_dispatch", dispatched)
    carried = dict(dispatched.carrier)
    common = {"queue": "cap.demo", "worker": "demo@host", "capability": "demo", "carrier": carried}
    emit("on_step_start", StepEvent(run_id, step_id, task, at=at + 0.01, **common))
    end = StepEvent(run_id, step_id, task, at=at + 0.05, duration=0.04, **common)
    if fail:
        end.error = {"type": "ValueError", "message": "boom", "traceback": "Traceback ..."}
        emit("on_step_failure", end)
    else:
        emit("on_step_success", end)


def by_name(exporter: InMemorySpanExporter) -> dict[str, object]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_a_chain_is_one_trace_with_each_step_a_child_of_the_run(spans: InMemorySpanExporter) -> None:
    emit("on_run_start", RunEvent("run-chain", "shop.checkout", "1", at=100.0))
    for i, step in enumerate(("0.reserve", "1.charge", "2.ship")):
        run_step("run-chain", step, f"shop.{step[2:]}", at=100.1 + i)
    emit(
        "on_run_finish",
        RunEvent("run-chain", "shop.checkout", "1", status="succeeded", at=104.0, duration=4.0),
    )

    got = by_name(spans)
    assert set(got) == {"run shop.checkout", "step 0.reserve", "step 1.charge", "step 2.ship"}
    run = got["run shop.checkout"]
    expected = run_span_context("run-chain")
    assert (run.context.trace_id, run.context.span_id) == (expected.trace_id, expected.span_id)
    assert run.parent is None
    assert run.start_time == 100_000_000_000 and run.end_time == 104_000_000_000
    assert run.attributes["canvasflow.run_id"] == "run-chain"
    assert run.attributes["canvasflow.status"] == "succeeded"
    for step in ("0.reserve", "1.charge", "2.ship"):
        span = got[f"step {step}"]
        assert span.context.trace_id == run.context.trace_id
        assert span.parent.span_id == run.context.span_id
        assert span.attributes["canvasflow.run_id"] == "run-chain"
        assert span.attributes["canvasflow.step_id"] == step
        assert span.attributes["canvasflow.worker"] == "demo@host"
        assert span.status.status_code == StatusCode.UNSET


def test_a_chord_with_a_failed_header_member_and_its_compensation(spans: InMemorySpanExporter) -> None:
    emit("on_run_start", RunEvent("run-chord", "etl", "2", at=10.0))
    run_step("run-chord", "h0.fetch", "etl.fetch", at=10.1)
    run_step("run-chord", "h1.fetch", "etl.fetch", at=10.1, fail=True)
    emit("on_compensation_start", CompensationEvent("run-chord", "h0.fetch", "etl.unfetch", at=11.0))
    emit(
        "on_compensation_success",
        CompensationEvent("run-chord", "h0.fetch", "etl.unfetch", at=11.2, duration=0.2),
    )
    emit("on_run_finish", RunEvent("run-chord", "etl", "2", status="compensated", at=12.0, duration=2.0))

    got = by_name(spans)
    assert set(got) == {"run etl", "step h0.fetch", "step h1.fetch", "compensate h0.fetch"}
    run = got["run etl"]
    assert run.status.status_code == StatusCode.ERROR
    children = [got["step h0.fetch"], got["step h1.fetch"], got["compensate h0.fetch"]]
    assert {c.parent.span_id for c in children} == {run.context.span_id}
    assert {c.context.trace_id for c in children} == {run.context.trace_id}
    failed = got["step h1.fetch"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.events[0].name == "exception"
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    comp = got["compensate h0.fetch"]
    assert comp.attributes["canvasflow.step_id"] == "h0.fetch"
    assert comp.attributes["canvasflow.task"] == "etl.unfetch"
    assert (comp.end_time - comp.start_time) == pytest.approx(200_000_000, abs=1_000)


def test_the_dispatch_carries_a_w3c_traceparent_naming_the_run_span(spans: InMemorySpanExporter) -> None:
    event = StepEvent("run-x", "0.a", "t", generation=2)
    emit("on_step_dispatch", event)
    ctx = run_span_context("run-x", 2)
    assert event.carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    assert run_span_context("run-x", 1).span_id != ctx.span_id  # a resumed run: a run span of its own
    assert run_span_context("run-x", 1).trace_id == ctx.trace_id  # in the same trace


def test_a_step_without_a_carrier_still_has_the_run_span_as_parent(spans: InMemorySpanExporter) -> None:
    emit("on_step_start", StepEvent("run-y", "0.a", "t", at=1.0))
    emit("on_step_success", StepEvent("run-y", "0.a", "t", at=1.5, duration=0.5))
    (span,) = spans.get_finished_spans()
    assert span.parent.span_id == run_span_context("run-y").span_id


def test_a_span_still_open_when_its_task_ends_is_ended_with_it(spans: InMemorySpanExporter) -> None:
    from celery.signals import task_postrun
    from opentelemetry import trace

    emit("on_step_start", StepEvent("run-w", "0.wait", "t", at=1.0))  # a step that now waits for a signal
    assert trace.get_current_span().get_span_context().trace_id == run_span_context("run-w").trace_id
    task_postrun.send(sender=None)
    (span,) = spans.get_finished_spans()
    assert span.name == "step 0.wait" and span.attributes["canvasflow.unfinished"] is True
    assert trace.get_current_span().get_span_context().trace_id != run_span_context("run-w").trace_id
