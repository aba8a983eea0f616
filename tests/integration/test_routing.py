"""Engines and routing with real workers, one per engine (docs/routing.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from canvasflow import RoutingError, current_app, list_runs, signal, start
from canvasflow.config.brokers import queue_stats
from canvasflow.config.queues import redis_lists
from canvasflow.workers.routing.live import read_live
from canvasflow.workflows.runtime.context import runtime
from tests.integration import routing_flows
from tests.integration.sagacheck import ran_in

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def engine_env() -> dict[str, str]:
    modules = [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.routing_flows"]
    return {"CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules), "CANVASFLOW_ENGINE_HEARTBEAT_INTERVAL": "0.5"}


def queues(capability: str, engine: str) -> list[str]:
    return [f"cap.{capability}.{engine}", f"cap.{capability}", "canvasflow", "canvasflow.control"]


def live_engines() -> set[str]:
    rt = runtime()
    beats, _, _ = read_live(rt.redis, rt.settings.key_prefix, [])
    return {b["engine"] for b in beats}


def wait_live(expected: set[str], *, alive: bool = True, timeout: float = 20.0) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        live = live_engines()
        if (expected <= live) if alive else not (expected & live):
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"engines {expected} still {'not ' if alive else ''}live: {live_engines()}")


def wait_step(run_id: str, step_id: str, status: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while runtime().state.step_states(run_id).get(step_id) != status:
        assert time.monotonic() < deadline, runtime().state.step_states(run_id)
        time.sleep(0.05)


def engines_of(record, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    return [s.route["engine"] for s in record.steps if s.route and s.step_id.startswith(prefix)]


def start_engines(factory, capability: str, *engines: str, concurrency: int = 2) -> dict:  # type: ignore[no-untyped-def]
    workers = {
        e: factory(queues=queues(capability, e), concurrency=concurrency, extra_env=engine_env())
        for e in engines
    }
    wait_live({f"{capability}/{e}" for e in engines})
    return workers


def test_load_balanced_spreads_200_steps_over_two_engines(celery_worker_factory):
    start_engines(celery_worker_factory, "rlb", "a", "b")
    record = start("rt.lb200").wait(120)
    assert record.status == "succeeded", record.error
    counts = Counter(engines_of(record))
    assert sum(counts.values()) == 200
    assert counts["rlb/a"] >= 80 and counts["rlb/b"] >= 80, counts  # no worse than 40/60
    # each step ran where it was routed, and the decision is journaled with it
    for s in record.steps:
        assert s.queue == s.route["queue"] and s.route["strategy"] == "load_balanced"


def test_load_balanced_keeps_a_chain_on_one_engine_and_still_spreads_a_burst(celery_worker_factory):
    start_engines(celery_worker_factory, "rlb", "a", "b")
    chained = start("rt.lb_chain").wait(60)
    assert chained.status == "succeeded", chained.error
    ran = [s.result for s in sorted(chained.steps, key=lambda s: int(s.step_id.split(".")[0]))]
    assert len(set(ran)) == 1, ran  # each step ran where its predecessor did (locality) ...
    assert len(set(ran_in(chained).values())) == 1  # ... fused into one delivery
    burst = start("rt.lb_burst").wait(120)
    assert burst.status == "succeeded", burst.error
    spread = Counter(s.result for s in burst.steps if s.step_id.startswith("1."))
    assert sum(spread.values()) == 200 and min(spread.values()) >= 80, spread  # no worse than 40/60
    members = [s for s in burst.steps if s.step_id.startswith("1.")]
    assert all(s.route["engine"] == f"rlb/{s.result}" for s in members)  # journaled where it ran


def test_best_available_moves_to_the_next_engine_when_the_preferred_one_dies(celery_worker_factory):
    workers = start_engines(celery_worker_factory, "rba", "primary", "backup")
    run = start("rt.ba_kill")
    wait_step(run.id, "2.wait_signal", "waiting")
    workers["primary"].kill_group()  # SIGKILL: no goodbye, its heartbeat just stops
    gone_after = wait_live({"rba/primary"}, alive=False)
    assert gone_after < 5  # three heartbeats of 0.5 s, then the next read drops it
    signal(run.id, "go")
    record = run.wait(60)
    assert record.status == "succeeded", record.error
    assert [record.step(s).result for s in ("0.ba", "1.ba", "3.ba", "4.ba")] == [
        "primary",
        "primary",
        "backup",
        "backup",
    ]
    assert record.step("3.ba").route["engine"] == "rba/backup"
    assert "priority" in record.step("0.ba").route["reason"]


def test_a_workflow_registered_as_an_engine_runs_the_step_as_a_child_run(celery_worker_factory):
    celery_worker_factory(queues=[*queues("rwf", "native"), "cap.demo"], extra_env=engine_env())
    wait_live({"rwf/native"})
    record = start("rt.via_workflow").wait(60)
    assert record.status == "succeeded", record.error
    assert record.result == 5 + 100 + 1  # the workflow engine (priority 10) added 100, not 1
    step = record.step("0.wf_step")
    assert (step.route["engine"], step.route["workflow"]) == ("rwf/viawf", "rt.wf_engine")
    children = [r for r in list_runs(workflow="rt.wf_engine", limit=50) if r.parent_run_id == record.id]
    assert len(children) == 1 and children[0].status == "succeeded"


def test_a_hybrid_step_runs_each_engines_own_implementation(celery_worker_factory):
    start_engines(celery_worker_factory, "rhy", "gpu", "cpu", "nocode", concurrency=1)
    record = start("rt.hybrid").wait(60)
    assert record.status == "succeeded", record.error
    impls = {s.result.split(":")[0] + ":" + s.result.split(":")[2] for s in record.steps}
    assert impls == {"gpu-impl:gpu", "cpu-impl:cpu"}  # each engine ran its own; nocode none
    assert "rhy/nocode" not in {s.route["engine"] for s in record.steps}


def test_resource_aware_never_sends_a_gpu_step_to_a_cpu_engine(celery_worker_factory):
    workers = start_engines(celery_worker_factory, "rres", "gpu", "cpu")
    record = start("rt.resources").wait(60)
    assert record.status == "succeeded", record.error
    gpu_steps = [s for s in record.steps if s.task == "rt.gpu_only"]
    assert len(gpu_steps) == 8 and {s.result for s in gpu_steps} == {"gpu"}
    assert {s.route["engine"] for s in gpu_steps} == {"rres/gpu"}
    dag = start("rt.resources_dag", {"page": 1}).wait(60)  # the DAG form takes the same path
    assert dag.status == "succeeded", dag.error
    assert (dag.step("scan").result, dag.step("again").result) == ("gpu", "gpu")
    assert dag.step("again").route["engine"] == "rres/gpu"
    before = len(list_runs(limit=1000))
    workers["gpu"].kill_group()
    wait_live({"rres/gpu"}, alive=False)
    time.sleep(0.6)  # this process's cached view is read again
    with pytest.raises(RoutingError, match=r"no live worker for capability 'rres' offering \{'gpu': 1\}"):
        start("rt.resources")
    assert len(list_runs(limit=1000)) == before  # nothing created, nothing enqueued


def test_with_route_when_none_live_wait_a_gpu_step_waits_for_a_gpu_worker(celery_worker_factory, monkeypatch):
    # the cpu worker also runs the recovery sweep, eager here: a step waiting on an engine's
    # queue is not lost, it must not be published again
    eager = {"CANVASFLOW_SWEEP_INTERVAL": "0.5", "CANVASFLOW_QUEUED_GRACE": "1"}
    celery_worker_factory(queues=queues("rwait", "cpu"), extra_env={**engine_env(), **eager})
    wait_live({"rwait/cpu"})
    rt = runtime()
    with pytest.raises(RoutingError, match="CANVASFLOW_ROUTE_WHEN_NONE_LIVE=wait"):
        start("rt.gpu_alone")  # refused by default: no live engine offers gpu=1
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(update={"route_when_none_live": "wait"}))
    run = start("rt.gpu_alone")
    time.sleep(4.0)  # the cpu engine's worker beats and sweeps meanwhile: it takes nothing over
    assert "wait_gpu" not in runtime().state.step_states(run.id)  # not claimed by anyone
    depth = {q.queue: q.depth for q in queue_stats(current_app(), ["cap.rwait.gpu", "cap.rwait.cpu"])}
    assert depth == {"cap.rwait.gpu": 1, "cap.rwait.cpu": 0}  # waiting on the gpu engine's queue
    start_engines(celery_worker_factory, "rwait", "gpu")
    record = run.wait(60)
    assert record.status == "succeeded", record.error
    step = record.step("wait_gpu")
    assert step.result == "gpu" and step.route["reason"] == "no live worker fits: waiting on rwait/gpu"


def test_performance_based_sends_most_steps_to_the_fast_engine(celery_worker_factory):
    workers = start_engines(celery_worker_factory, "rperf", "fast", "slow", concurrency=1)
    record = start("rt.perf30").wait(90)
    assert record.status == "succeeded", record.error
    after_warmup = [s.result for s in sorted(record.steps, key=lambda s: int(s.step_id.split(".")[0]))][8:]
    assert after_warmup.count("fast") >= 0.8 * len(after_warmup), after_warmup
    ewma = {row: v for row, v in read_live(runtime().redis, runtime().settings.key_prefix, [])[1].items()}
    assert ewma["rperf/slow"] > 2 * ewma["rperf/fast"], ewma
    # the fast engine's worker dies: the next runs go to the slow one and finish
    workers["fast"].kill_group()
    wait_live({"rperf/fast"}, alive=False)
    time.sleep(0.6)  # this process's cached view is read again
    after = start("rt.perf30").wait(90)
    assert after.status == "succeeded", after.error
    assert {s.result for s in after.steps} == {"slow"}


def test_performance_based_finds_an_engine_twice_as_fast_within_20_steps(celery_worker_factory):
    start_engines(celery_worker_factory, "rperf", "fast", "slow", concurrency=1)
    record = start("rt.perf_twice").wait(120)
    assert record.status == "succeeded", record.error
    ran = [s.result for s in sorted(record.steps, key=lambda s: int(s.step_id.split(".")[0]))]
    after = ran[20:]
    assert after.count("fast") >= 0.9 * len(after), ran


def test_fallback_after_an_engine_fails_the_step(celery_worker_factory, capsys):
    from canvasflow.workflows.cli.main import main

    start_engines(celery_worker_factory, "rfb", "flaky", "steady")
    record = start("rt.fallback").wait(60)
    assert record.status == "succeeded", record.error
    for sid in ("0.fb", "1.fb"):
        s = record.step(sid)
        assert (
            s.result == "steady" and s.route["engine"] == "rfb/steady" and s.route["tried"] == ["rfb/flaky"]
        )
        assert s.attempts == 2
        # every decision in order, with what became of it: flaky failed it, steady ran it
        assert [(d["engine"], d["outcome"]) for d in s.routes] == [
            ("rfb/flaky", "EngineError"),
            ("rfb/steady", "ran"),
        ]
        assert s.routes[0]["queue"] == "cap.rfb.flaky" and s.routes[0]["strategy"] == "best_available"
        assert s.routes[0]["worker"] and "backend is down" in s.routes[0]["error"]
        assert s.routes[0]["at"] <= s.routes[1]["at"]
    rerouted = [e for e in runtime().store.events(record.id) if e["event"] == "step.rerouted"]
    assert len(rerouted) == 2 and {e["data"]["error"]["engine"] for e in rerouted} == {"rfb/flaky"}
    assert all(e["data"]["worker"] for e in rerouted)
    assert all(e["data"]["routes"][-1]["outcome"] == "EngineError" for e in rerouted)  # history has it
    for command in (["status", record.id], ["history", record.id]):  # the chain, oldest first
        assert main(command) == 0
        shown = capsys.readouterr().out
        assert (
            "rfb/flaky (best_available: highest priority (10) with a live worker) -> EngineError on" in shown
        )
        assert "| rfb/steady (best_available: highest priority (1) with a live worker) -> ran" in shown
    # when every engine failed it, the run fails (nothing to compensate here) with the last error
    failed = start("rt.no_engine_left").wait(60)
    assert failed.status == "failed" and failed.error["type"] == "EngineError"
    assert "steady is down too" in failed.error["message"]
    assert failed.step("1.fb_never").route["tried"] == ["rfb/flaky"]
    assert [(d["engine"], d["outcome"]) for d in failed.step("1.fb_never").routes] == [
        ("rfb/flaky", "EngineError"),
        ("rfb/steady", "EngineError"),
    ]


def test_parallel_capability_on_three_engines_and_execute_action(celery_worker_factory, capsys):
    from canvasflow.workflows.cli.main import main

    start_engines(celery_worker_factory, "rpar", "e1", "e2", "e3", concurrency=1)
    everyone = start("rt.par_all").wait(60)
    assert everyone.status == "succeeded", everyone.error
    assert everyone.result == {f"rpar/{e}": {"engine": e, "n": 7} for e in ("e1", "e2", "e3")}
    members = [s for s in everyone.steps if s.route and s.route["strategy"] == "pinned"]
    assert sorted(s.route["engine"] for s in members) == ["rpar/e1", "rpar/e2", "rpar/e3"]
    for s in members:  # each member carries its own decision, journaled under its action's name
        assert s.task == "rpar.identify" and s.queue == s.route["queue"]
        assert s.routes == [{**s.route, "outcome": "ran"}]
        assert s.route["implementation"] == "tests.integration.routing_flows.identify"
        assert s.result["engine"] == s.route["engine"].split("/")[1]  # where it really ran
    majority = start("rt.par_majority").wait(60)
    assert (majority.status, majority.result) == ("succeeded", "yes"), majority.error
    custom = start("rt.par_custom").wait(60)
    assert (custom.status, custom.result) == ("succeeded", ["rpar/e1", "rpar/e2", "rpar/e3"]), custom.error
    one = start("rt.act").wait(60)
    assert one.status == "succeeded" and one.result == {"engine": "e1", "n": 2}  # best_available
    assert one.steps[0].route["engine"] == "rpar/e1"
    # the decision is drawn by `canvasflow graph RUN` and shown by `status --json`
    for fmt in ("mermaid", "dot"):
        assert main(["graph", one.id, "--format", fmt]) == 0
        drawn = capsys.readouterr().out
        assert "engine rpar/e1 on cap.rpar.e1" in drawn and "best_available: highest priority (3)" in drawn
    assert main(["status", one.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["steps"][0]["route"]
    assert (shown["engine"], shown["queue"], shown["strategy"]) == (
        "rpar/e1",
        "cap.rpar.e1",
        "best_available",
    )
    assert shown["reason"].startswith("highest priority")
    assert main(["status", one.id]) == 0
    assert "engine=rpar/e1 (best_available: highest priority (3)" in capsys.readouterr().out
    assert one.steps[0].task == "rpar.identify" and one.steps[0].routes[-1]["outcome"] == "ran"


def test_parallel_capability_first_wins_and_revokes_the_slow_engines_step(celery_worker_factory):
    workers = start_engines(celery_worker_factory, "rpar", "e1", "e2", "e3", concurrency=1)
    tag = uuid.uuid4().hex
    began = time.monotonic()
    record = start("rt.par_first", {"tag": tag}).wait(60)
    took = time.monotonic() - began
    assert record.status == "succeeded", record.error
    assert record.result == {"engine": "e1"}  # the fast engine's result
    assert took < routing_flows.RACE_DELAY["e3"], took  # nobody waited for the slow engine
    revoked = {"revoked": True, "winner": "rpar/e1"}  # what the losers' steps completed with
    won = {"won": True, "engine": "rpar/e1", "result": {"engine": "e1"}}
    members = [s.result for s in record.steps if s.task == "rpar.race_to"]  # journaled by action
    assert sorted(members, key=json.dumps) == sorted([won, revoked, revoked], key=json.dumps)
    r = runtime().redis
    # the slow engine had started its step; it was terminated, so it never finishes
    assert r.get(routing_flows.race_mark(tag, "e3", "started"))
    deadline = began + routing_flows.RACE_DELAY["e3"] + 2.0
    while time.monotonic() < deadline:
        assert not r.get(routing_flows.race_mark(tag, "e3", "finished")), "the revoked step ran to completion"
        assert not r.get(routing_flows.race_mark(tag, "e2", "finished")), "the revoked step ran to completion"
        time.sleep(0.2)
    assert "Terminating" in workers["e3"].read_log() or "revoked" in workers["e3"].read_log()
    # a member that fails does not win; when every member failed the run fails with each error
    failed = start("rt.par_first_fails").wait(60)
    assert failed.status == "failed" and failed.error["type"] == "EngineError", failed.error
    assert all(
        f"rpar/{e}: EngineError: engine {e} cannot do it" in failed.error["message"]
        for e in ("e1", "e2", "e3")
    )


def test_parallel_capability_in_the_dag_form_with_each_aggregate(celery_worker_factory):
    start_engines(celery_worker_factory, "rpar", "e1", "e2", "e3", concurrency=2)
    tag = uuid.uuid4().hex
    record = start("rt.par_dag", {"tag": tag}).wait(60)
    assert record.status == "succeeded", record.error
    assert record.result == {
        "all": {f"rpar/{e}": {"engine": e, "n": 9} for e in ("e1", "e2", "e3")},  # the seed's payload
        "majority": "yes",
        "custom": ["rpar/e1", "rpar/e2", "rpar/e3"],
        "first": {"engine": "e1"},
    }
    ids = {s.step_id for s in record.steps}
    assert {"all.e1", "all.e2", "all.e3", "custom.all", "first.e3"} <= ids
    assert record.step("first.e3").result == {"revoked": True, "winner": "rpar/e1"}
    assert record.step("all.e2").queue == "cap.rpar.e2"


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        ("rt.nowhere", "capability 'rnowhere' has no engine"),
        ("rt.badstrategy", "unknown routing strategy 'fastest_please'"),
        ("rt.tpu", r"requires \['tpu'\] but no engine of 'rres' declares them"),
    ],
)
def test_unroutable_runs_are_refused_before_anything_is_enqueued(workflow: str, message: str):
    before = len(list_runs(limit=1000))
    with pytest.raises(RoutingError, match=message):
        start(workflow)
    assert len(list_runs(limit=1000)) == before


def test_engines_report_and_an_unregistered_engines_heartbeat(celery_worker_factory, capsys):
    from structlog.testing import capture_logs

    from canvasflow.workers.beats import Serving, clear_beat, write_beat
    from canvasflow.workers.routing.live import LiveView
    from canvasflow.workflows.cli.main import main

    w = celery_worker_factory(queues=queues("rlb", "a"), concurrency=2, extra_env=engine_env())
    wait_live({"rlb/a"})
    rt = runtime()
    # a worker node serving an engine nobody declared
    write_beat(rt.redis, rt.settings, "stray@host", [1], [], Serving(("cap.rlb.zzz",), ("rlb/zzz",)))
    try:
        with capture_logs() as logs:
            states = LiveView(rt.redis, rt.settings.key_prefix, 0.0, False).states()
        assert "rlb/zzz" not in states and states["rlb/a"].consumers == 2
        assert any("not registered" in entry["event"] and entry["engine"] == "rlb/zzz" for entry in logs)
        assert main(["engines", "--json"]) == 0
        rows = {
            r.get("capability", "") + "/" + str(r["name"]): r for r in json.loads(capsys.readouterr().out)
        }
        a = rows["rlb/a"]
        assert a["live"] and a["consumers"] == 2 and a["queue"] == "cap.rlb.a" and a["depth"] == 0
        assert [x["worker"] for x in a["workers"]] == [w.hostname]
        assert not rows["rlb/b"]["live"] and rows["/rlb/zzz"]["unregistered"]
    finally:
        clear_beat(rt.redis, rt.settings, "stray@host")


def test_a_bad_engines_file_is_refused_naming_the_field(tmp_path):
    bad = tmp_path / "engines.toml"
    bad.write_text('[[engines]]\nname = "gpu"\ncapability = "ocr"\ncapacity = 0\n')
    env = {**os.environ, "CANVASFLOW_ENGINES": str(bad)}
    out = subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", "engines", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "engines.0.capacity" in out.stdout + out.stderr


def test_a_routed_chain_runs_fused_where_the_router_sends_it(celery_worker_factory):
    """Each routed step is still decided as it becomes ready; when the decision is a queue the
    worker that released it consumes, that worker runs it (chain fusion) with the route
    journaled as for a published step."""
    start_engines(celery_worker_factory, "rba", "primary")
    record = start("rt.ba_chain").wait(60)
    assert record.status == "succeeded", record.error
    assert [s.result for s in record.steps] == ["primary"] * 5  # context().engine
    assert engines_of(record) == ["rba/primary"] * 5
    assert all(s.queue == s.route["queue"] == "cap.rba.primary" for s in record.steps)
    assert len(set(ran_in(record).values())) == 1  # one message ran the five of them


def test_the_live_view_counts_an_engine_queue_s_messages_in_every_priority_lane():
    rt = runtime()
    queue = f"cap.lanes.{uuid.uuid4().hex[:6]}"  # no worker consumes it
    for priority in (0, 3, 6, 9, 9):  # kombu's Redis transport keeps one list per lane
        current_app().send_task("canvasflow.nosuch", queue=queue, priority=priority, ignore_result=True)
    try:
        assert read_live(rt.redis, rt.settings.key_prefix, [queue])[2] == [5]  # not only lane 0's one
    finally:
        rt.redis.delete(*redis_lists(queue))
