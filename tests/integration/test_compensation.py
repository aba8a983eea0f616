"""Sagas against real workers: the right compensations, once each, in reverse order."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from canvasflow.workflows import compensate, get_run, map_reduce, undo
from canvasflow.workflows.runtime.context import runtime
from tests.integration.saga import effects, items, square, total
from tests.integration.sagacheck import assert_rolled_back, end_status, new_log, run_saga, step_of

pytestmark = [pytest.mark.redis, pytest.mark.worker, pytest.mark.usefixtures("broker")]


@pytest.mark.parametrize("failing", range(4))
def test_chain_failure_at_each_position(worker, failing):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(*(s(f"c{i}", fail=i == failing) for i in range(4))))
    assert record.status == ("compensated" if failing else "failed")  # nothing completed: nothing undone
    undone = assert_rolled_back(record, log)
    assert undone == [f"c{i}" for i in reversed(range(failing))]


@pytest.mark.parametrize("failing", range(3))
def test_group_failure_at_each_position(worker, failing):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("pre"), group(*(s(f"g{i}", fail=i == failing) for i in range(3)))))
    assert record.status == "compensated"
    undone = assert_rolled_back(record, log)
    assert undone[-1] == "pre"


@pytest.mark.parametrize("failing", ["h0", "h1", "h2", "body", "post"])
def test_chord_failure_in_header_body_or_after(worker, failing):
    log = new_log()
    s = step_of(log)

    def build():
        header = [s(f"h{i}", fail=failing == f"h{i}") for i in range(3)]
        return chain(
            s("pre"), chord(header, s("body", fail=failing == "body")), s("post", fail=failing == "post")
        )

    record = run_saga(build)
    assert record.status == "compensated"
    undone = assert_rolled_back(record, log)
    assert undone[-1] == "pre"
    if failing in ("body", "post"):  # the whole header completed, so all of it is undone
        assert {"h0", "h1", "h2"} <= set(undone)


@pytest.mark.parametrize("failing", ["i0", "i1", "inner", "o1", "outer"])
def test_nested_chord_failure(worker, failing):
    log = new_log()
    s = step_of(log)

    def build():
        inner = chord(
            [s("i0", fail=failing == "i0"), s("i1", fail=failing == "i1")],
            s("inner", fail=failing == "inner"),
        )
        return chain(
            s("pre"), chord([inner, s("o1", fail=failing == "o1")], s("outer", fail=failing == "outer"))
        )

    record = run_saga(build)
    assert record.status == "compensated", record.error
    assert_rolled_back(record, log)


@pytest.mark.parametrize("failing", ["items", "mapper", "reducer"])
def test_map_reduce_failure(worker, failing):
    log = new_log()

    def build():
        src = items.s(10, log=log) if failing != "items" else step_of(log)("items", fail=True)
        return map_reduce(
            square.s(log=log, fail_on=7 if failing == "mapper" else None),
            total.s(log=log, fail=failing == "reducer"),
            items_from=src,
            chunk_size=3,
        )

    record = run_saga(build)
    assert record.status == end_status(log), record.error
    entries = effects(log)
    done = {e[3:] for e in entries if e.startswith("do:") and e != "do:total"}
    undone = [e[5:] for e in entries if e.startswith("undo:")]
    assert len(undone) == len(set(undone))
    assert set(undone) == done
    if "items" in undone:
        assert undone[-1] == "items"
    if failing == "reducer":
        assert done == {"items", *(f"item{i}" for i in range(10))}


def test_slow_sibling_finishing_after_the_failure_is_compensated(worker):
    log = new_log()
    s = step_of(log)
    # fast fails once slow has started: a sibling still queued at the failure is skipped, not run
    record = run_saga(
        lambda: chain(s("pre"), group(s("slow", sleep=1.5), s("fast", fail=True, after="slow")))
    )
    assert record.status == "compensated"
    entries = effects(log)
    assert entries.index("fail:fast") < entries.index("do:slow") < entries.index("undo:slow")
    assert assert_rolled_back(record, log) == ["slow", "pre"]


def test_compensation_that_keeps_failing_ends_compensation_failed_and_others_still_run(worker):
    log = new_log()
    s = step_of(log)
    gate = f"{log}:gate"
    record = run_saga(lambda: chain(s("a"), s("b", comp_fails=gate), s("c"), s("d", fail=True)))
    assert record.status == "compensation_failed"
    entries = effects(log)
    assert entries.count("undofail:b") == 3  # first try and two retries
    assert "undo:c" in entries and "undo:a" in entries
    b = record.step("1.act")
    assert b.compensation_status == "compensation_failed"
    assert b.compensation_error["type"] == "RuntimeError"
    assert record.error["compensation_failed"] == ["1.act"]

    runtime().redis.set(gate, 1)
    done = compensate(record.id).wait(30)
    assert done.status == "compensated"
    assert effects(log).count("undo:b") == 1 and effects(log).count("undo:a") == 1


def test_two_failures_racing_start_one_rollback(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("pre"), group(s("x", fail=True), s("y", fail=True), s("z"))))
    assert record.status == "compensated"
    assert_rolled_back(record, log)
    events = [e["event"] for e in runtime().store.events(record.id)]
    assert events.count("run.compensating") == 1
    assert events.count("run.compensated") == 1


def test_undo_of_a_succeeded_run(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), chord([s("b"), s("c")], s("d"))))
    assert record.status == "succeeded"
    undone = undo(record.id).wait(30)
    assert undone.status == "compensated"
    order = assert_rolled_back(get_run(record.id), log)
    assert order[0] == "d" and order[-1] == "a"


def test_continue_policy_completes_with_the_fallback(worker):
    from tests.integration.saga import maybe

    log = new_log()
    s = step_of(log)
    record = run_saga(lambda: chain(s("a"), maybe.s(), s("b")))
    assert record.status == "succeeded"
    assert record.step("1.maybe").result == "fallback-value"
    assert record.step("1.maybe").error["fallback"] is True
    assert effects(log) == ["do:a", "do:b"]


def test_revoke_policy_stops_in_flight_siblings(worker):
    log = new_log()
    s = step_of(log)
    record = run_saga(
        lambda: chain(s("pre"), group(s("slow", sleep=5), s("bad", fail=True, sleep=0.3))), inflight="revoke"
    )
    assert record.status == "compensated"
    assert "do:slow" not in effects(log)
    assert assert_rolled_back(record, log) == ["pre"]


def test_duplicate_errbacks_racing_for_one_failure_start_one_rollback(worker):
    """Six copies of the errback for one failed step, at once: one rollback, one undo each."""
    import threading

    from canvasflow.workflows import start, wait_signal
    from canvasflow.workflows.runtime.failure import fail_step

    log = new_log()
    s = step_of(log)
    from canvasflow.workflows import Workflow

    wf = Workflow(f"t.saga.race.{log[-8:]}", "1", build=lambda: chain(s("a"), s("b"), wait_signal("never")))
    run = start(wf.name)
    assert run.wait(30).status == "waiting"
    rt = runtime()
    barrier = threading.Barrier(6)

    def errback() -> None:
        barrier.wait()
        fail_step(rt, run.id, "2.wait_signal", 1, None, RuntimeError("failed once, reported six times"))

    threads = [threading.Thread(target=errback) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = run.wait(30)
    assert record.status == "compensated"
    assert effects(log).count("undo:a") == 1 and effects(log).count("undo:b") == 1
    events = [e["event"] for e in rt.store.events(run.id)]
    assert events.count("run.compensating") == 1 and events.count("run.compensated") == 1


def test_cli_undo_compensate_and_check(worker):
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "canvasflow.workflows.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    log = new_log()
    s = step_of(log)
    done = run_saga(lambda: chain(s("a"), s("b")))
    out = cli("undo", done.id, "--wait", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "compensated"
    assert effects(log)[-2:] == ["undo:b", "undo:a"]

    gate = f"{log}:gate"
    stuck = run_saga(lambda: chain(s("c", comp_fails=gate), s("d", fail=True)))
    assert stuck.status == "compensation_failed"
    runtime().redis.set(gate, 1)
    out = cli("compensate", stuck.id, "--wait", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "compensated"
    assert json.loads(cli("graph", stuck.id, "--json").stdout)["graph"].count("[compensated]") == 1

    check = cli("check", "--json")
    assert check.returncode == 1
    assert any(
        "saga.writes_without_undo writes but has no compensation" in p
        for p in json.loads(check.stdout)["problems"]
    )
    assert not any("saga.act" in p for p in json.loads(check.stdout)["problems"])
