"""Metrics, traces and the event stream with real workers.

* metrics: known runs on a worker with ``CANVASFLOW_METRICS`` on, then ``/metrics`` scraped
  over HTTP from a real ``canvasflow metrics --port`` subprocess and from the worker's own
  ``CANVASFLOW_METRICS_PORT`` exporter: counts by status, a histogram bucket that moved, the
  live gauges, and every metric the Grafana dashboard draws;
* traces: workers list ``tests.integration.span_probe:RedisSpans`` in ``CANVASFLOW_MIDDLEWARE``
  and write every finished span to Redis; the spans of a chain and of a chord;
* events: the event stream of a real run, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import port_for
import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from canvasflow.workflows import get_run, start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.telemetry.events import EventStream, read
from canvasflow.workflows.telemetry.hooks import Middleware
from canvasflow.workflows.telemetry.metrics import Metrics
from canvasflow.workflows.telemetry.registry import add_middleware, remove_middleware
from canvasflow.workflows.telemetry.tracing import run_trace_id
from tests.harness.plugin import ROOT
from tests.integration import span_probe, telemetry_flows
from tests.integration.saga import effects

pytestmark = [pytest.mark.redis, pytest.mark.worker]

MODULES = json.dumps([*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), telemetry_flows.MODULE])
DASHBOARD = ROOT / "deploy" / "grafana" / "canvasflow.json"


@contextlib.contextmanager
def in_this_process(mw: Middleware) -> Iterator[Middleware]:
    """The test process starts runs: its hooks (run start, first dispatches) need the middleware too."""
    add_middleware(mw)
    try:
        yield mw
    finally:
        remove_middleware(mw)


def get(url: str, timeout: float = 60.0) -> str:
    """GET ``url``, retrying while the server is still coming up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


# -- metrics ----------------------------------------------------------------------------------
def test_metrics_after_known_runs_scraped_over_http(
    celery_worker_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    worker_port = port_for.select_random()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored after: Metrics() sets it here
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    celery_worker_factory(
        extra_env={
            "CANVASFLOW_WORKFLOW_MODULES": MODULES,
            "CANVASFLOW_METRICS": "true",
            "CANVASFLOW_METRICS_DIR": str(directory),
            "CANVASFLOW_METRICS_PORT": str(worker_port),
        }
    )
    log = f"tel:{uuid.uuid4().hex}"
    with in_this_process(Metrics(directory)):
        chains = [start("tel.chain") for _ in range(2)]
        saga = start("tel.saga", {"log": log})
        for run in chains:
            assert run.wait(60).status == "succeeded"
        assert saga.wait(60).status == "compensated"
    assert effects(log) == ["do:a", "fail:b", "undo:a"]

    port = port_for.select_random()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canvasflow.workflows.cli",
            "metrics",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CANVASFLOW_METRICS_DIR": str(directory)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # the last run's finish is announced right after its status is journaled: wait for it
        deadline = time.monotonic() + 30
        while True:
            text = get(f"http://127.0.0.1:{port}/metrics")
            got = samples(text)
            done = got.get(
                ("canvasflow_runs_finished_total", (("status", "compensated"), ("workflow", "tel.saga")))
            )
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        exporter.terminate()
        _, err = exporter.communicate(timeout=10)
    assert "Traceback" not in err.decode(), err.decode()

    assert value(got, "canvasflow_runs_started_total", workflow="tel.chain") == 2
    assert value(got, "canvasflow_runs_started_total", workflow="tel.saga") == 1
    assert value(got, "canvasflow_runs_finished_total", workflow="tel.chain", status="succeeded") == 2
    assert value(got, "canvasflow_runs_finished_total", workflow="tel.saga", status="compensated") == 1
    assert value(got, "canvasflow_run_duration_seconds_count", workflow="tel.chain", status="succeeded") == 2

    sleeps = {"task": "demo.sleep", "capability": "demo", "queue": "cap.demo", "outcome": "succeeded"}
    assert value(got, "canvasflow_step_duration_seconds_count", **sleeps) == 2
    assert value(got, "canvasflow_step_duration_seconds_bucket", le="0.05", **sleeps) == 0  # slept 60 ms
    assert value(got, "canvasflow_step_duration_seconds_bucket", le="+Inf", **sleeps) == 2  # it moved
    assert value(got, "canvasflow_step_duration_seconds_sum", **sleeps) >= 0.12
    failures = {"task": "saga.act", "capability": "demo", "error": "RuntimeError"}
    assert value(got, "canvasflow_step_failures_total", **failures) == 1
    assert value(got, "canvasflow_compensations_total", task="saga.undo_act", outcome="succeeded") == 1

    # live gauges: the broker and the journal were asked at scrape time
    assert value(got, "canvasflow_scrape_errors", part="queues") == 0
    assert value(got, "canvasflow_scrape_errors", part="runs") == 0
    assert value(got, "canvasflow_queue_depth", capability="demo", queue="cap.demo") == 0
    assert value(got, "canvasflow_queue_consumers", capability="demo", queue="cap.demo") >= 1
    assert not any(k[0] == "canvasflow_runs_active" and ("workflow", "tel.chain") in k[1] for k in got)

    # the worker's own exporter adds up the same files
    from_worker = samples(get(f"http://127.0.0.1:{worker_port}/metrics"))
    assert value(from_worker, "canvasflow_runs_finished_total", workflow="tel.chain", status="succeeded") == 2

    # every metric the dashboard draws exists (scraped here, or declared by the middleware)
    declared = {m._name for m in vars(Metrics(directory)).values() if hasattr(m, "_name")}
    known = {f.name for f in text_string_to_metric_families(text)} | declared  # families without samples too
    drawn = set(re.findall(r"canvasflow_[a-z_]+", DASHBOARD.read_text()))
    assert {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in drawn} <= known


# -- traces -----------------------------------------------------------------------------------
def wait_spans(run_id: str, expected: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = span_probe.spans(f"{run_trace_id(run_id):032x}")
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_spans_of_a_chain_and_a_chord_recorded_by_workers(celery_worker_factory: Any) -> None:
    celery_worker_factory(
        extra_env={
            "CANVASFLOW_WORKFLOW_MODULES": MODULES,
            "CANVASFLOW_MIDDLEWARE": json.dumps(["tests.integration.span_probe:RedisSpans"]),
        }
    )
    with in_this_process(span_probe.RedisSpans()):
        runs = {name: start(name) for name in ("tel.chain", "tel.chord")}
        for run in runs.values():
            assert run.wait(60).status == "succeeded"
    for name, run in runs.items():
        steps = {s.step_id: s for s in get_run(run.id).steps}
        found = wait_spans(run.id, len(steps) + 1)
        by_name = {s["name"]: s for s in found}
        assert sorted(by_name) == sorted([f"run {name}", *(f"step {sid}" for sid in steps)]), found
        root = by_name[f"run {name}"]
        assert root["parent_id"] is None and root["attributes"]["canvasflow.run_id"] == run.id
        assert root["attributes"]["canvasflow.status"] == "succeeded"
        for sid, step in steps.items():
            span = by_name[f"step {sid}"]
            assert span["parent_id"] == root["span_id"], (name, sid)
            assert span["trace_id"] == root["trace_id"]
            assert span["attributes"]["canvasflow.run_id"] == run.id
            assert span["attributes"]["canvasflow.step_id"] == sid
            assert span["attributes"]["canvasflow.task"] == step.task
            assert span["attributes"]["canvasflow.worker"]
            assert span["status"] == "UNSET"
            assert root["start"] <= span["start"] <= span["end"] <= root["end"]


# -- events -----------------------------------------------------------------------------------
def test_the_event_stream_of_a_run_in_order(celery_worker_factory: Any) -> None:
    celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES, "CANVASFLOW_EVENTS": "true"})
    with in_this_process(EventStream()):
        run = start("tel.chain")
        assert run.wait(60).status == "succeeded"
    step_ids = [s.step_id for s in get_run(run.id).steps]
    rt = runtime()
    deadline = time.monotonic() + 30
    while True:
        events = read(rt.redis, rt.settings.key_prefix, run=run.id, last=None)
        if (events and events[-1]["hook"] == "run_finish") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    hooks = [(e["hook"], e.get("step_id")) for e in events]
    assert hooks[0] == ("run_start", None) and hooks[-1] == ("run_finish", None), hooks
    assert events[-1]["status"] == "succeeded"
    for sid in step_ids:  # each step once: dispatched, started, succeeded, in that order
        mine = [h for h, s in hooks if s == sid]
        assert mine == ["step_dispatch", "step_start", "step_success"], (sid, hooks)
    starts = [s for h, s in hooks if h == "step_start"]
    assert starts == sorted(step_ids), hooks  # a chain: one after the other, in graph order
    success = next(e for e in events if e["hook"] == "step_success" and e["task"] == "demo.sleep")
    assert success["duration"] >= 0.06 and success["worker"]


def test_a_running_steps_progress_is_a_live_gauge(celery_worker_factory: Any) -> None:
    from prometheus_client import generate_latest

    from canvasflow.config.settings import get_settings
    from canvasflow.workflows.telemetry.exporter import build_registry

    celery_worker_factory(extra_env={"CANVASFLOW_WORKFLOW_MODULES": MODULES})
    gate = f"tel:gate:{uuid.uuid4().hex}"
    run = start("tel.progress", {"gate": gate})
    registry = build_registry(get_settings())
    key = (
        "canvasflow_step_progress",
        (("run_id", run.id), ("step_id", "halfway"), ("workflow", "tel.progress")),
    )
    deadline = time.monotonic() + 60
    while True:  # the live gauges are cached for 5 s: poll until the report is seen
        got = samples(generate_latest(registry).decode())
        if key in got or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got[key] == 0.75  # 3 of 4 pages
    runtime().redis.set(gate, "1", ex=60)
    assert run.wait(60).status == "succeeded"
    time.sleep(5.5)  # past the cache
    assert key not in samples(generate_latest(registry).decode())  # a finished step has no series
