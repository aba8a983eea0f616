"""The middleware registry: who is called for which hook, and what a raising hook does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from canvasflow.workflows.telemetry import registry
from canvasflow.workflows.telemetry.hooks import Middleware, RunEvent, StepEvent
from canvasflow.workflows.telemetry.logs import EventLog
from canvasflow.workflows.telemetry.registry import add_middleware, emit


@pytest.fixture
def registered() -> Iterator[list[Middleware]]:
    added: list[Middleware] = []
    yield added
    for mw in added:
        registry.remove_middleware(mw)


class Starts(Middleware):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_step_start(self, event: StepEvent) -> None:
        self.seen.append(event.step_id)


class Broken(Middleware):
    def on_step_start(self, event: StepEvent) -> None:
        raise RuntimeError("broken middleware")


def test_only_overridden_hooks_are_listened_to(registered):
    assert not registry.listening("on_step_start")  # nothing registered: the runtime builds no event
    starts = Starts()
    registered.append(add_middleware(starts))
    assert registry.listening("on_step_start") and not registry.listening("on_step_success")
    emit("on_step_start", StepEvent("r", "s1", "t"))
    emit("on_step_success", StepEvent("r", "s1", "t"))  # nobody overrides it: nothing called
    assert starts.seen == ["s1"]
    registry.remove_middleware(starts)
    assert not registry.listening("on_step_start")


def test_a_raising_middleware_is_logged_and_the_others_still_run(registered):
    starts = Starts()
    registered += [add_middleware(Broken()), add_middleware(starts)]
    with capture_logs() as logs:
        emit("on_step_start", StepEvent("r", "s2", "t"))
    assert starts.seen == ["s2"]
    assert [(x["event"], x["middleware"], x["hook"]) for x in logs] == [
        ("middleware raised; the run goes on", "Broken", "on_step_start")
    ]


def test_a_core_listener_raises_through(registered):
    registered.append(add_middleware(Broken(), core=True))
    assert registry.core_listening("on_step_start")
    with pytest.raises(RuntimeError, match="broken middleware"):
        emit("on_step_start", StepEvent("r", "s3", "t"))


def test_the_event_log_writes_one_structured_line_per_event(registered):
    registered.append(add_middleware(EventLog()))
    error = {"type": "ValueError", "message": "bad", "traceback": "Traceback ..."}
    with capture_logs() as logs:
        emit("on_run_finish", RunEvent("r1", "wf", "1", "failed", duration=1.5))
        emit("on_step_failure", StepEvent("r1", "s", "t", attempt=2, worker="w1", error=error))
    assert logs[0]["event"] == "run.finished" and logs[0]["run_id"] == "r1" and logs[0]["status"] == "failed"
    assert logs[0]["log_level"] == "warning" and logs[0]["duration"] == 1.5
    assert logs[1]["event"] == "step.failed" and logs[1]["step_id"] == "s" and logs[1]["attempt"] == 2
    assert logs[1]["error"] == {"type": "ValueError", "message": "bad"}  # the traceback: DEBUG only


class Built(Middleware):
    def on_run_start(self, event: RunEvent) -> None:
        pass


def test_builtins_are_built_with_the_settings_on_first_use_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The composition root hands a factory to the registry: it runs when the settings'
    middleware is loaded (or at once when that happened already), each factory once."""
    calls: list[tuple[Any, ...]] = []

    def factory(settings: Any, present: Any) -> list[Middleware]:
        calls.append((settings, tuple(present)))
        return [built]

    built = Built()
    monkeypatch.setattr(registry, "_builtins", [])
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        registry.use_builtins(factory)
        registry.use_builtins(factory)
        assert calls == [] and not registry.core_listening("on_run_start")  # nothing built yet
        assert registry.listening("on_run_start") and len(calls) == 1  # the first use loads them
        assert registry.middlewares().count(built) == 1
        registry.remove_middleware(built)
        registry.use_builtins(lambda s, present: [built])  # after the first use: at once
        assert registry.middlewares().count(built) == 1 and len(calls) == 1
    finally:
        registry.remove_middleware(built)
