"""Engines, routed steps and workflows of the routing tests (imported by their workers too)."""

from __future__ import annotations

import time

from celery import chain, group

from canvasflow import (
    Engine,
    EngineError,
    Workflow,
    action,
    context,
    execute_action,
    input,
    parallel_capability,
    register_engine,
    result,
    step,
    wait_signal,
)
from canvasflow.workers.demo import add

ENGINES = [
    Engine("a", "rlb"),
    Engine("b", "rlb"),
    Engine("primary", "rba", priority=10),
    Engine("backup", "rba", priority=1),
    Engine("gpu", "rres", priority=1, resources={"gpu": 1}),
    Engine("cpu", "rres", priority=5, resources={"cpus": 4}),
    Engine("fast", "rperf"),
    Engine("slow", "rperf"),
    Engine("flaky", "rfb", priority=10),
    Engine("steady", "rfb", priority=1),
    Engine("gpu", "rhy", priority=5),
    Engine("cpu", "rhy", priority=1),
    Engine("nocode", "rhy", priority=10),
    Engine("native", "rwf", priority=1),
    Engine("viawf", "rwf", priority=10, workflow="rt.wf_engine"),
    Engine("busy", "rto", priority=10),
    Engine("spare", "rto", priority=1),
    Engine("e1", "rpar", priority=3),
    Engine("e2", "rpar", priority=2),
    Engine("e3", "rpar", priority=1),
    Engine("gpu", "rwait", priority=1, resources={"gpu": 1}),
    Engine("cpu", "rwait", priority=5, resources={"cpus": 4}),
]
for _engine in ENGINES:
    register_engine(_engine)


@step(name="rt.lb", capability="rlb", route="load_balanced")
def lb(i: int) -> int:
    return i


@step(name="rt.ba", capability="rba", route="best_available")
def ba(i: int) -> str | None:
    return context().engine


@step(name="rt.ba_slow", capability="rba", route="best_available")
def ba_slow(i: int) -> str | None:
    time.sleep(1.0)
    return context().engine


@step(name="rt.rto", capability="rto", route="best_available")
def rto(i: int) -> str | None:
    time.sleep(1.5)
    return context().engine


@step(name="rt.wf_step", capability="rwf")
def wf_step(n: int) -> int:
    return n + 1


@step(name="rt.hybrid", capability="rhy", engine="gpu", route="load_balanced")
def hybrid_gpu(x: int) -> str:
    return f"gpu-impl:{x}:{context().engine}"


@step(name="rt.hybrid", capability="rhy", engine="cpu", route="load_balanced")
def hybrid_cpu(x: int) -> str:
    return f"cpu-impl:{x}:{context().engine}"


@step(name="rt.gpu_only", capability="rres", route="resource_aware", requires={"gpu": 1})
def gpu_only(i: int) -> str | None:
    return context().engine


@step(name="rt.wait_gpu", capability="rwait", route="resource_aware", requires={"gpu": 1})
def wait_gpu(i: int) -> str | None:
    return context().engine


@step(name="rt.any_res", capability="rres", route="resource_aware")
def any_res(i: int) -> str | None:
    return context().engine


@step(name="rt.lb_where", capability="rlb", route="load_balanced")
def lb_where(*_: object) -> str | None:
    return context().engine  # the engine whose queue delivered it: where it really ran


@step(name="rt.perf2", capability="rperf", route="performance_based")
def perf2(i: int) -> str | None:
    engine = context().engine
    time.sleep(0.08 if engine == "slow" else 0.04)  # the fast engine is twice as fast
    return engine


@step(name="rt.perf", capability="rperf", route="performance_based")
def perf(i: int) -> str | None:
    engine = context().engine
    time.sleep(0.1 if engine == "slow" else 0.02)  # the slow engine takes 5x as long
    return engine


@step(name="rt.nowhere", capability="rnowhere", route="load_balanced")
def nowhere() -> None:
    return None


@step(name="rt.badstrategy", capability="rlb", route="fastest_please")
def badstrategy() -> None:
    return None


@step(name="rt.tpu", capability="rres", requires={"tpu": 1})
def tpu() -> None:
    return None


@step(name="rt.fb", capability="rfb")
def fb(i: int) -> str | None:
    engine = context().engine
    if engine == "flaky":
        raise EngineError("the flaky engine's backend is down")
    return engine


@step(name="rt.fb_never", capability="rfb")
def fb_never() -> None:
    raise EngineError(f"engine {context().engine} is down too")


@action("rpar")
def identify(payload: dict) -> dict:
    return {"engine": context().engine, "n": payload["n"]}


@action("rpar")
def vote(payload: dict) -> str:
    return "no" if context().engine == "e3" else "yes"


RACE_DELAY = {"e1": 0.5, "e2": 3.0, "e3": 8.0}  # e3 is the slow engine: revoked mid-step


def race_mark(tag: str, engine: str | None, what: str) -> str:
    from canvasflow.workflows.runtime.context import runtime

    return f"{runtime().settings.key_prefix}:test:race:{tag}:{engine}:{what}"


@action("rpar")
def race_to(payload: dict) -> dict:
    from canvasflow.workflows.runtime.context import runtime

    engine = context().engine
    runtime().redis.set(race_mark(payload["tag"], engine, "started"), 1, ex=600)
    time.sleep(RACE_DELAY[str(engine)])
    runtime().redis.set(race_mark(payload["tag"], engine, "finished"), 1, ex=600)
    return {"engine": engine}


@action("rpar")
def broken(payload: dict) -> dict:
    raise EngineError(f"engine {context().engine} cannot do it")


@step(name="rt.count_engines", capability="rpar")
def count_engines(by_engine: dict) -> list:
    return sorted(by_engine)


lb200 = Workflow("rt.lb200", "1", build=lambda: group(lb.si(i) for i in range(200)))
ba_kill = Workflow(
    "rt.ba_kill", "1", build=lambda: chain(ba.si(1), ba.si(2), wait_signal("go"), ba.si(3), ba.si(4))
)
resources = Workflow(
    "rt.resources",
    "1",
    build=lambda: group(*(gpu_only.si(i) for i in range(8)), *(any_res.si(i) for i in range(8))),
)
gpu_alone = Workflow("rt.gpu_alone", "1", build=lambda: wait_gpu.si(0))
perf30 = Workflow("rt.perf30", "1", build=lambda: chain(perf.si(i) for i in range(30)))
perf_twice = Workflow("rt.perf_twice", "1", build=lambda: chain(perf2.si(i) for i in range(100)))
lb_chain = Workflow("rt.lb_chain", "1", build=lambda: chain(lb_where.si() for _ in range(10)))
lb_burst = Workflow(
    "rt.lb_burst", "1", build=lambda: chain(lb_where.si(), group(lb_where.si() for _ in range(200)))
)
to_nowhere = Workflow("rt.nowhere", "1", build=lambda: chain(lb.si(1), nowhere.si()))
bad_strategy = Workflow("rt.badstrategy", "1", build=lambda: badstrategy.si())
needs_tpu = Workflow("rt.tpu", "1", build=lambda: tpu.si())
fallback = Workflow("rt.fallback", "1", build=lambda: chain(fb.si(1), fb.si(2)))
no_engine_left = Workflow("rt.no_engine_left", "1", build=lambda: chain(fb.si(1), fb_never.si()))
par_all = Workflow("rt.par_all", "1", build=lambda: parallel_capability("rpar", "identify", {"n": 7}))
par_majority = Workflow(
    "rt.par_majority", "1", build=lambda: parallel_capability("rpar", "vote", {}, aggregate="majority")
)
par_custom = Workflow(
    "rt.par_custom",
    "1",
    build=lambda: parallel_capability("rpar", "identify", {"n": 1}, aggregate=count_engines.s()),
)
par_first = Workflow(
    "rt.par_first",
    "1",
    build=lambda tag: chain(parallel_capability("rpar", "race_to", {"tag": tag}, aggregate="first")),
)
par_first_fails = Workflow(
    "rt.par_first_fails", "1", build=lambda: parallel_capability("rpar", "broken", {}, aggregate="first")
)
par_dag = Workflow(
    "rt.par_dag",
    "1",
    steps={
        "seed": execute_action("rpar", "identify", {"n": 9}),
        "all": parallel_capability("rpar", "identify", result("seed")),
        "majority": parallel_capability("rpar", "vote", {}, aggregate="majority"),
        "custom": parallel_capability("rpar", "identify", {"n": 1}, aggregate=count_engines.s()),
        "first": parallel_capability("rpar", "race_to", {"tag": input("tag")}, aggregate="first"),
    },
)
act = Workflow("rt.act", "1", build=lambda: chain(execute_action("rpar", "identify", {"n": 2})))
resources_dag = Workflow(
    "rt.resources_dag",
    "1",
    steps={
        "scan": gpu_only.s(input("page")),
        "any": any_res.s(input("page")),
        "again": gpu_only.s(result("any")),
    },
)
ba_slow_chain = Workflow("rt.ba_slow", "1", build=lambda: chain(ba_slow.si(i) for i in range(4)))
rto_group = Workflow("rt.rto", "1", build=lambda: group(rto.si(i) for i in range(4)))
wf_engine = Workflow("rt.wf_engine", "1", build=lambda n: add.s(n, 100))
via_workflow = Workflow("rt.via_workflow", "1", build=lambda: chain(wf_step.si(n=5), add.s(1)))
hybrid = Workflow("rt.hybrid", "1", build=lambda: group(hybrid_gpu.si(i) for i in range(8)))
ba_chain = Workflow("rt.ba_chain", "1", build=lambda: chain(ba.si(i) for i in range(5)))
