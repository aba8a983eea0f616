"""The metrics middleware: hooks emitted in this process, values read back over HTTP from the
exporter exactly as Prometheus would scrape them (multiprocess files, no live gauges here)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from canvasflow.config.settings import load_settings
from canvasflow.workflows.telemetry.exporter import serve
from canvasflow.workflows.telemetry.hooks import (
    CompensationEvent,
    RouteEvent,
    RunEvent,
    StepEvent,
)
from canvasflow.workflows.telemetry.metrics import Metrics
from canvasflow.workflows.telemetry.registry import add_middleware, emit, remove_middleware


@pytest.fixture
def metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Metrics]:
    """A Metrics middleware writing into a directory of this test's; the variable restored after."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    m = add_middleware(Metrics(tmp_path / "metrics"))
    assert isinstance(m, Metrics)
    yield m
    remove_middleware(m)


def scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics from a real exporter on a free port: sample name + labels -> value."""
    server = serve(load_settings(metrics_dir=str(directory)), 0, "127.0.0.1", live=False)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_runs_steps_and_compensations_are_counted_and_timed(metrics: Metrics) -> None:
    for run in ("r1", "r2", "r3"):
        emit("on_run_start", RunEvent(run, "checkout", "1"))
    emit("on_run_finish", RunEvent("r1", "checkout", "1", status="succeeded", duration=0.7))
    emit("on_run_finish", RunEvent("r2", "checkout", "1", status="succeeded", duration=3.0))
    emit("on_run_finish", RunEvent("r3", "checkout", "1", status="compensated", duration=42.0))
    step = {"task": "shop.charge", "capability": "payments", "queue": "cap.payments"}
    emit("on_step_success", StepEvent("r1", "1.charge", duration=0.02, **step))
    emit("on_step_retry", StepEvent("r3", "1.charge", duration=0.3, retry_in=1.0, **step))
    emit(
        "on_step_failure",
        StepEvent("r3", "1.charge", attempt=2, duration=0.4, error={"type": "CardDeclined"}, **step),
    )
    emit("on_route", RouteEvent("r1", "0.ocr", "ocr", "gpu", "cap.ocr.gpu", "best_available"))
    emit("on_compensation_success", CompensationEvent("r3", "0.reserve", "shop.release", duration=0.01))
    emit("on_compensation_failure", CompensationEvent("r3", "0.reserve", "shop.release", error={"type": "X"}))

    got = scrape(metrics.directory)

    def v(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert v("canvasflow_runs_started_total", workflow="checkout") == 3
    assert v("canvasflow_runs_finished_total", workflow="checkout", status="succeeded") == 2
    assert v("canvasflow_runs_finished_total", workflow="checkout", status="compensated") == 1
    # run durations 0.7 and 3.0 s: the 1 s bucket holds one of them, the 5 s bucket both
    ok = {"workflow": "checkout", "status": "succeeded"}
    assert v("canvasflow_run_duration_seconds_bucket", le="1.0", **ok) == 1
    assert v("canvasflow_run_duration_seconds_bucket", le="5.0", **ok) == 2
    assert v("canvasflow_run_duration_seconds_sum", **ok) == pytest.approx(3.7)

    hist = "canvasflow_step_duration_seconds"
    assert v(f"{hist}_count", outcome="succeeded", **step) == 1
    assert v(f"{hist}_bucket", le="0.01", outcome="succeeded", **step) == 0  # 0.02 s: above 10 ms
    assert v(f"{hist}_bucket", le="0.025", outcome="succeeded", **step) == 1
    assert v(f"{hist}_count", outcome="retried", **step) == 1
    assert v(f"{hist}_count", outcome="failed", **step) == 1
    assert v("canvasflow_step_retries_total", task="shop.charge", capability="payments") == 1
    failures = {"task": "shop.charge", "capability": "payments", "error": "CardDeclined"}
    assert v("canvasflow_step_failures_total", **failures) == 1
    assert v("canvasflow_routes_total", capability="ocr", engine="gpu", strategy="best_available") == 1
    assert v("canvasflow_compensations_total", task="shop.release", outcome="succeeded") == 1
    assert v("canvasflow_compensations_total", task="shop.release", outcome="failed") == 1


def test_each_routing_decision_is_counted_with_its_outcome_when_its_step_ends(metrics: Metrics) -> None:
    past = (
        {"engine": "ocr/gpu", "strategy": "best_available", "outcome": "EngineError"},
        {"engine": "ocr/tpu", "strategy": "best_available", "outcome": "engine died"},
    )
    last = {"engine": "ocr/cpu", "strategy": "best_available"}
    step = {"task": "ocr.read", "capability": "ocr", "queue": "cap.ocr.cpu"}
    emit("on_step_success", StepEvent("r1", "0.read", routes=(*past, last), **step))
    emit("on_step_failure", StepEvent("r2", "0.read", routes=(last,), error={"type": "EngineError"}, **step))
    got = scrape(metrics.directory)

    def v(engine: str, outcome: str) -> float:
        labels = {"capability": "ocr", "engine": engine, "strategy": "best_available", "outcome": outcome}
        return got.get(("canvasflow_route_outcomes_total", tuple(sorted(labels.items()))), 0.0)

    assert (v("ocr/gpu", "EngineError"), v("ocr/tpu", "engine died")) == (1, 1)
    assert (v("ocr/cpu", "ran"), v("ocr/cpu", "EngineError")) == (1, 1)


def test_a_second_scrape_adds_up_what_came_in_between(metrics: Metrics) -> None:
    emit("on_run_start", RunEvent("a", "wf"))
    assert scrape(metrics.directory)[("canvasflow_runs_started_total", (("workflow", "wf"),))] == 1
    emit("on_run_start", RunEvent("b", "wf"))
    emit("on_run_start", RunEvent("c", "other"))
    got = scrape(metrics.directory)
    assert got[("canvasflow_runs_started_total", (("workflow", "wf"),))] == 2
    assert got[("canvasflow_runs_started_total", (("workflow", "other"),))] == 1
