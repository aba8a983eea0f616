"""Durable timers, the pure parts: durations and instants, due times, index members, the compiled
sleep step (canvas and DAG form), and the inline runner letting a sleep pass at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from celery import chain, chord

from canvasflow import InputError, Workflow, result, sleep, sleep_until
from canvasflow.config.celery_app import app
from canvasflow.config.settings import Settings
from canvasflow.testing import run_inline
from canvasflow.workers.demo import add, echo
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.timers import due_at, index_key, instant_of, member, now, parse, seconds_of


def test_a_duration_is_seconds_or_a_timedelta_and_never_negative():
    assert seconds_of(5) == 5.0 and seconds_of(0.25) == 0.25
    assert seconds_of(timedelta(hours=1, seconds=2)) == 3602.0
    for bad in (-1, timedelta(seconds=-1), "5", None, True, float("nan"), float("inf")):
        with pytest.raises(InputError, match=r"canvasflow\.sleep\(30\)"):
            seconds_of(bad)


def test_an_instant_must_say_its_time_zone_and_is_kept_in_utc():
    plus2 = datetime(2030, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert instant_of(plus2) == "2030-01-01T12:00:00+00:00"
    with pytest.raises(InputError, match="timezone-aware"):
        instant_of(datetime(2030, 1, 1, 12, 0))
    with pytest.raises(InputError):
        instant_of("2030-01-01T12:00:00+00:00")


def test_due_time_of_a_sleep_counts_from_its_start_and_of_a_sleep_until_is_fixed():
    assert due_at({"seconds": 30.0}, 1_000.0) == 1_030.0
    until = {"until": "2030-01-01T12:00:00+00:00"}
    fixed = datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp()
    assert due_at(until, 1_000.0) == due_at(until, 2_000.0) == fixed


def test_an_index_member_round_trips_and_anything_else_is_not_a_timer():
    m = member("run.1|x", "0.h1.sleep", 3)
    assert parse(m) == ("run.1|x", "0.h1.sleep", 3)
    assert parse(m.encode()) == ("run.1|x", "0.h1.sleep", 3)
    for junk in ("nope", "[1, 2, 3]", '["r", "s"]', None):
        assert parse(junk) is None


def test_the_fake_clock_is_the_wall_clock_moved_by_the_offset_and_the_index_has_its_own_key():
    moved = Settings(clock_offset=3600.0, key_prefix="cfx")
    assert 3599 < now(moved) - now(Settings(key_prefix="cfx")) < 3601
    assert index_key(moved) == "cfx:timers"  # no run's hash tag: one key of its own (Redis Cluster)


def test_a_sleep_compiles_to_a_step_that_hands_on_what_it_receives():
    graph = compile_canvas(chain(add.s(1, 2), sleep(timedelta(minutes=1)), add.s(10)), app)
    node = graph.steps["1.sleep"]
    assert node.kind == "sleep" and node.spec == {"seconds": 60.0} and node.kwargs == {}
    assert node.args == [{"r": "0.add"}] and node.deps == ["0.add"]
    assert graph.steps["2.add"].args[0] == {"r": "1.sleep"}


def test_a_sleep_in_a_chord_body_receives_the_header_list_and_sleep_until_keeps_its_instant():
    when = datetime(2030, 5, 1, tzinfo=UTC)
    graph = compile_canvas(chord([add.s(1, 1), add.s(2, 2)], chain(sleep_until(when), echo.s())), app)
    node = graph.steps["b.0.sleep"]
    assert node.spec == {"until": "2030-05-01T00:00:00+00:00"}
    assert node.args == [{"l": [{"r": "h0.add"}, {"r": "h1.add"}]}]


def test_in_the_dag_form_a_sleep_hands_on_the_value_it_is_given():
    wf = Workflow(
        "t.unit.sleep.dag",
        "1",
        steps={"a": add.s(2, 3), "wait": sleep(5, result("a")), "b": add.s(result("wait"), 1)},
    )
    graph = wf.compile({})
    assert graph.steps["wait"].kind == "sleep" and graph.steps["wait"].deps == ["a"]
    record = run_inline(wf.name, {})
    assert record.status == "succeeded" and record.result == 6
    wait = record.step("wait")
    assert wait.result == 5 and (wait.wakes_at - wait.started_at) == timedelta(seconds=5)


def test_the_inline_runner_lets_a_chained_sleep_pass_at_once():
    wf = Workflow("t.unit.sleep.chain", "1", build=lambda: chain(add.s(1, 1), sleep(3600), add.s(1)))
    record = run_inline(wf.name, {})
    assert record.status == "succeeded" and record.result == 3
    assert record.step("1.sleep").status == "succeeded" and record.step("1.sleep").result == 2
