"""Engines, strategies and the router's decision, on snapshots of the live view (no Redis)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import pytest

from canvasflow import Engine, register_strategy
from canvasflow.config.errors import DefinitionError, RoutingError, SettingsError
from canvasflow.config.queues import engines_in
from canvasflow.workers.engines import EngineRegistry, load_engines_file, registry
from canvasflow.workers.routing.router import decide, next_draw
from canvasflow.workers.routing.snapshot import Choice, EngineState, StepNeeds
from canvasflow.workers.routing.strategies import (
    best_available,
    load_balanced,
    performance_based,
    resource_aware,
    strategy,
)

GPU = Engine("gpu", "uocr", priority=10, resources={"gpu": 1, "memory_gb": 16}, capacity=4)
CPU = Engine("cpu", "uocr", priority=1, resources={"memory_gb": 8})
NEEDS = StepNeeds("s", "uocr")


@pytest.fixture
def declared() -> Iterator[None]:
    registry.register(GPU)
    registry.register(CPU)
    yield
    registry.unregister(GPU.key)
    registry.unregister(CPU.key)


def state(engine: Engine, **kw: object) -> EngineState:
    return EngineState(engine, **{"workers": 1, "consumers": 1, **kw})  # type: ignore[arg-type]


def test_engine_queue_key_and_resources() -> None:
    assert GPU.queue == "cap.uocr.gpu" and GPU.key == "uocr/gpu"
    assert GPU.satisfies({"gpu": 1, "memory_gb": 12}) and not CPU.satisfies({"gpu": 1})
    assert not CPU.satisfies({"memory_gb": 16})
    assert Engine("eu", "pay", resources={"region": "eu"}).satisfies({"region": "eu"})


def test_an_engine_declared_twice_differently_is_refused() -> None:
    reg = EngineRegistry()
    reg.register(GPU)
    reg.register(Engine("gpu", "uocr", priority=10, resources={"gpu": 1, "memory_gb": 16}, capacity=4))
    with pytest.raises(DefinitionError, match="declared twice"):
        reg.register(Engine("gpu", "uocr", priority=3))


def test_engines_file_json_and_toml(tmp_path) -> None:
    j = tmp_path / "engines.json"
    j.write_text(json.dumps({"engines": [{"name": "gpu", "capability": "ocr", "priority": 5}]}))
    assert load_engines_file(str(j))[0].queue == "cap.ocr.gpu"
    t = tmp_path / "engines.toml"
    t.write_text('[[engines]]\nname = "cpu"\ncapability = "ocr"\nresources = { cpus = 8 }\n')
    assert load_engines_file(str(t))[0].resources == {"cpus": 8}


def test_a_bad_engines_file_names_the_field(tmp_path) -> None:
    bad = tmp_path / "engines.json"
    bad.write_text(json.dumps([{"name": "gpu", "capability": "ocr", "priority": "high"}]))
    with pytest.raises(SettingsError, match=r"engines\.0\.priority"):
        load_engines_file(str(bad))
    bad.write_text(json.dumps([{"name": "gpu", "capability": "ocr", "capcity": 3}]))
    with pytest.raises(SettingsError, match=r"engines\.0\.capcity"):
        load_engines_file(str(bad))
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_engines_file(str(bad))


def test_best_available_takes_the_highest_priority() -> None:
    choice = best_available.choose([state(CPU), state(GPU)], NEEDS)
    assert choice is not None and choice.engine.engine is GPU


def test_load_balanced_takes_the_least_load_per_consumer() -> None:
    busy, idle = state(GPU, queued=6, consumers=2), state(CPU, queued=1, inflight=1)
    choice = load_balanced.choose([busy, idle], NEEDS)
    assert choice is not None and choice.engine is idle and "least loaded" in choice.reason
    more = state(GPU, queued=6, consumers=4)  # 1.5 per consumer beats 2
    choice = load_balanced.choose([more, idle], NEEDS)
    assert choice is not None and choice.engine is more


def test_resource_aware_keeps_engines_that_offer_what_the_step_requires() -> None:
    needs = StepNeeds("s", "uocr", {"gpu": 1})
    choice = resource_aware.choose([state(CPU), state(GPU, queued=50)], needs)
    assert choice is not None and choice.engine.engine is GPU
    assert resource_aware.choose([state(CPU)], needs) is None


def test_performance_based_prefers_the_fastest_and_explores_sometimes() -> None:
    fast, slow = state(GPU, ewma_ms=10.0), state(CPU, ewma_ms=50.0)
    picks = [
        performance_based.choose([slow, fast], StepNeeds("s", "uocr", draw=i / 100, exploration=0.05))
        for i in range(100)
    ]
    engines = [p.engine.engine.name for p in picks if p is not None]
    assert engines.count("gpu") == 95 and engines.count("cpu") == 5
    fresh = performance_based.choose([fast, state(CPU)], NEEDS)  # unmeasured: tried first
    assert fresh is not None and fresh.engine.engine is CPU and fresh.reason == "not measured yet"


def test_draws_are_uniform_and_an_exploration_rate_never_bunches() -> None:
    """performance_based explores when a draw is below 5%: over any 20 decisions in a row at most
    two explore (the bench's target: >= 90% of steps on the fastest engine), and 5% overall."""
    draws = [next_draw() for _ in range(10_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert all(abs(sum(1 for d in draws if k / 10 <= d < (k + 1) / 10) - 1000) <= 2 for k in range(10))
    explored = [d < 0.05 for d in draws]
    assert abs(sum(explored) - 500) <= 2
    assert max(sum(explored[i : i + 20]) for i in range(len(draws) - 20)) <= 2


def test_decide_skips_dead_and_tried_engines_and_waits_when_none_is_live(declared: None) -> None:
    states = {GPU.key: state(GPU, workers=0, consumers=0), CPU.key: state(CPU)}
    routing = {"capability": "uocr"}
    d = decide(states, "s", routing, "best_available")
    assert d["engine"] == "uocr/cpu" and d["queue"] == "cap.uocr.cpu" and d["strategy"] == "best_available"
    states[GPU.key] = state(GPU)
    assert decide(states, "s", routing, "best_available")["engine"] == "uocr/gpu"
    assert decide(states, "s", routing, "best_available", exclude={"uocr/gpu"})["engine"] == "uocr/cpu"
    states[GPU.key] = state(GPU, workers=0)
    gpu_only = decide(states, "s", {**routing, "requires": {"gpu": 1}}, "load_balanced")
    assert gpu_only["engine"] == "uocr/gpu" and "no live worker" in gpu_only["reason"]
    with pytest.raises(RoutingError, match="no engine of capability 'uocr' offers"):
        decide(states, "s", {**routing, "requires": {"gpu": 4}}, "best_available")


def test_unknown_and_custom_strategies(declared: None) -> None:
    with pytest.raises(RoutingError, match="unknown routing strategy 'fastest'"):
        strategy("fastest")

    def last_by_name(candidates: Sequence[EngineState], needs: StepNeeds) -> Choice | None:
        pick = max(candidates, key=lambda c: c.engine.name, default=None)
        return None if pick is None else Choice(pick, "last by name")

    register_strategy("last_by_name", last_by_name)
    states = {GPU.key: state(GPU), CPU.key: state(CPU)}
    d = decide(states, "s", {"capability": "uocr", "strategy": "last_by_name"}, "best_available")
    assert (d["engine"], d["reason"]) == ("uocr/gpu", "last by name")
    with pytest.raises(RoutingError, match="registered already"):
        register_strategy("last_by_name", best_available.choose)


def test_engine_queues_are_recognised_from_a_workers_queues() -> None:
    assert engines_in(["cap.ocr.gpu", "cap.ocr", "canvasflow", "cap.pay.stripe-eu"]) == [
        "ocr/gpu",
        "pay/stripe-eu",
    ]


def test_a_routing_decision_is_cheap(declared: None) -> None:
    states = {GPU.key: state(GPU), CPU.key: state(CPU)}
    routing = {"capability": "uocr", "strategy": "load_balanced"}
    n = 2000
    began = time.perf_counter()
    for _ in range(n):
        decide(states, "s", routing, "best_available")
    assert (time.perf_counter() - began) / n < 0.002  # a loose bound; the bench measures the median


def test_graph_pictures_show_each_steps_route() -> None:
    from canvasflow.workflows.runtime.graph import StepGraph, StepNode, lit
    from canvasflow.workflows.views.pictures import dot, mermaid

    graph = StepGraph({"a": StepNode("a", "ocr.read"), "b": StepNode("b", "ocr.read", deps=["a"])}, lit(None))
    routes = {
        "b": {
            "engine": "ocr/gpu",
            "queue": "cap.ocr.gpu",
            "strategy": "load_balanced",
            "reason": "least loaded (0 queued)",
            "tried": ["ocr/cpu"],
        }
    }
    drawn = mermaid(graph, {"a": "succeeded", "b": "running"}, routes)
    assert 's1["b<br/>ocr.read<br/>[running]<br/>engine ocr/gpu on cap.ocr.gpu' in drawn
    assert "load_balanced: least loaded (0 queued)<br/>tried ocr/cpu" in drawn
    assert "engine" not in drawn.splitlines()[1]  # step a was not routed
    assert "engine ocr/gpu on cap.ocr.gpu\\nload_balanced: least loaded (0 queued)" in dot(
        graph, routes=routes
    )


def test_steps_set_no_task_attribute_celery_deprecates() -> None:
    """Celery warns (CDeprecationWarning, removed in 6.0) for a task class carrying ``queue``,
    ``exchange``, ``routing_key``...: steps leave queues to the router and ``task_routes``."""
    import warnings

    from celery.exceptions import CDeprecationWarning

    from canvasflow import step
    from canvasflow.config.celery_app import current_app
    from canvasflow.workers.step import StepTask
    from tests.integration import routing_flows  # noqa: F401  (routed, hybrid and action steps)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @step(name="unit.routed_fresh", capability="uocr", route="load_balanced", requires={"gpu": 1})
        def fresh(x: int) -> int:  # registered and bound (for the first time) here
            return x

        @current_app().task(name="unit.plain_with_queue", queue="cap.uocr")
        def old_style() -> None:  # what steps did before: Celery warns
            return None

    warned = [str(w.message) for w in caught if issubclass(w.category, CDeprecationWarning)]
    assert len(warned) == 1 and "'queue' task attribute" in warned[0], warned
    deprecated = ("queue", "exchange", "exchange_type", "routing_key", "delivery_mode")
    steps = [t for t in current_app().tasks.values() if isinstance(t, StepTask)]
    assert len(steps) > 10
    assert not [(t.name, a) for t in steps for a in deprecated if a in type(t).__dict__]
    # canvasflow's own control tasks reach the control queue through task_routes instead
    from canvasflow.config.settings import get_settings
    from canvasflow.workflows.runtime.compiler import task_queue

    control = get_settings().control_queue
    for name in ("canvasflow.subworkflow", "canvasflow.send_signal", "canvasflow.start"):
        assert task_queue(current_app(), name) == control
        assert current_app().amqp.router.route({}, name)["queue"].name == control


def test_worker_command_of_an_engine(declared: None, capsys: pytest.CaptureFixture[str]) -> None:
    from canvasflow.workflows.cli.main import main

    assert main(["worker", "--capability", "uocr", "--engine", "gpu", "-c", "3", "--json"]) == 0
    cmd = json.loads(capsys.readouterr().out)["command"]
    assert cmd[cmd.index("-Q") + 1] == "cap.uocr.gpu,cap.uocr"  # its engine's queue and the shared one
    assert cmd[cmd.index("-c") + 1] == "3" and cmd[cmd.index("-n") + 1] == "uocr.gpu@%h"
    assert main(["worker", "--capability", "uocr", "--engine", "tpu", "--json"]) == 2
    assert (
        "engine 'tpu' is not declared for ['uocr'] (declared: {'uocr': ['gpu', 'cpu']})"
        in capsys.readouterr().out
    )


def test_locality_keeps_a_step_near_its_predecessor_within_the_margin(declared: None) -> None:
    routing = {"capability": "uocr", "strategy": "load_balanced"}
    states = {GPU.key: state(GPU, inflight=1), CPU.key: state(CPU)}  # the predecessor runs on gpu
    assert decide(states, "s", routing, "best_available")["engine"] == "uocr/cpu"  # no locality
    kept = decide(states, "s", routing, "best_available", prefer=GPU.key, margin=1.0)
    assert kept["engine"] == "uocr/gpu" and kept["reason"].startswith("ran the step before it")
    states[GPU.key].queued = 1  # load 2 against 0: beyond the margin, the burst spreads
    assert decide(states, "s", routing, "best_available", prefer=GPU.key, margin=1.0)["engine"] == "uocr/cpu"
    assert decide(states, "s", routing, "best_available", prefer=GPU.key, margin=0)["engine"] == "uocr/cpu"


def test_locality_never_overrides_priority_or_requires(declared: None) -> None:
    states = {GPU.key: state(GPU), CPU.key: state(CPU)}
    best = {"capability": "uocr", "strategy": "best_available"}
    assert decide(states, "s", best, "best_available", prefer=CPU.key, margin=5)["engine"] == "uocr/gpu"
    gpu = {"capability": "uocr", "strategy": "resource_aware", "requires": {"gpu": 1}}
    assert decide(states, "s", gpu, "best_available", prefer=CPU.key, margin=5)["engine"] == "uocr/gpu"
