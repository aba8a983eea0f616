"""The settings switch the built-in middleware on, each once."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import values

from canvasflow.config.settings import load_settings
from canvasflow.workflows.telemetry.builtin import from_settings
from canvasflow.workflows.telemetry.events import EventStream
from canvasflow.workflows.telemetry.metrics import Metrics
from canvasflow.workflows.telemetry.tracing import Tracing


def test_nothing_is_on_by_default() -> None:
    assert from_settings(load_settings()) == []


def test_each_setting_adds_its_middleware_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    s = load_settings(metrics=True, metrics_dir=str(tmp_path), events=True, tracing="console")
    built = from_settings(s)
    assert [type(m) for m in built] == [Metrics, EventStream, Tracing]
    assert built[0].directory == tmp_path  # type: ignore[attr-defined]
    assert from_settings(s, built) == []  # listed in CANVASFLOW_MIDDLEWARE already: not twice


def test_a_bad_tracing_value_names_the_variable() -> None:
    from canvasflow.config.errors import SettingsError

    with pytest.raises(SettingsError, match="CANVASFLOW_TRACING"):
        load_settings(tracing="jaeger")


def test_tracing_without_opentelemetry_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from canvasflow.config.errors import SettingsError

    monkeypatch.setitem(sys.modules, "canvasflow.workflows.telemetry.tracing", None)  # import fails
    with pytest.raises(SettingsError, match=r"pip install 'canvasflow\[otel\]'"):
        from_settings(load_settings(tracing="otlp"))


def test_worker_metrics_port_turns_metrics_on_for_the_worker(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from canvasflow.workflows.cli.main import main

    assert main(["worker", "--capability", "demo", "--metrics-port", "9808", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)["env"]
    assert env["CANVASFLOW_METRICS"] == "true" and env["CANVASFLOW_METRICS_PORT"] == "9808"
