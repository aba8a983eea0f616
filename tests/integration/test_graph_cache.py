"""Each process keeps run graphs parsed up to CANVASFLOW_GRAPH_CACHE_BYTES of their JSON: a
cached graph is served without reading Redis, the least recently used goes first past the limit."""

from __future__ import annotations

import json
import uuid

import pytest

from canvasflow.config.celery_app import app
from canvasflow.config.settings import get_settings
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepGraph, StepNode, lit

pytestmark = [pytest.mark.redis]


def graph_of(n: int) -> str:
    steps = {f"s{i}": StepNode(id=f"s{i}", task="demo.add", args=[lit(i)]) for i in range(n)}
    return json.dumps(StepGraph(steps=steps, result=lit(None)).to_json())


def put(rt: Runtime, run_id: str, graph_json: str) -> None:
    rt.state.init_run(run_id, generation=1, graph_json=graph_json, pending={}, completed={}, left=1)


def test_graphs_are_cached_up_to_the_byte_limit(redis_url: str) -> None:
    size = len(graph_of(20))
    rt = Runtime(app, get_settings().model_copy(update={"graph_cache_bytes": 2 * size}))
    runs = [uuid.uuid4().hex for _ in range(3)]
    for run_id in runs:
        put(rt, run_id, graph_of(20))
    first = rt.graph(runs[0], 1)
    assert sorted(first.steps) == sorted(f"s{i}" for i in range(20))
    for run_id in runs:
        rt.redis.delete(rt.state.key(run_id, "graph"))
    assert rt.graph(runs[0], 1) is first  # from the cache: Redis was not read
    for run_id in runs:  # reload two of them: the cache holds two graphs of this size
        put(rt, run_id, graph_of(20))
    rt.graph(runs[1], 1)
    rt.graph(runs[2], 1)  # past the limit: runs[0], the least recently used, is dropped
    for run_id in runs:
        rt.redis.delete(rt.state.key(run_id, "graph"))
    assert sorted(rt.graph(runs[2], 1).steps) == sorted(first.steps)
    with pytest.raises(KeyError):  # neither cached nor in Redis, nor journaled
        rt.graph(runs[0], 1)
