"""Fallback: a step that an engine failed with an engine-level error goes to the next engine.

Called by ``failure.fail_step`` before the step counts as failed. The step is re-routed when
it was routed, the error is an :class:`EngineError`, fewer than ``max_fallbacks`` engines
were tried, and an untried engine that fits it has a live worker; each attempt is journaled
(event ``step.rerouted`` with the engine, worker and error). Otherwise the step fails as usual.
"""

from __future__ import annotations

from typing import Any

import structlog

from canvasflow.config.errors import EngineError
from canvasflow.workers.routing.decisions import superseded
from canvasflow.workers.routing.router import live_left
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.errors import error_info
from canvasflow.workflows.runtime.sending import arguments, send_step
from canvasflow.workflows.runtime.state import ACTIVE

log = structlog.get_logger("canvasflow.routing")


def reroute(rt: Runtime, ref: dict[str, Any] | None, exc: BaseException, worker: str | None) -> bool:
    """Send the failed step to another engine; False when it must fail (no route, no candidate left)."""
    route = (ref or {}).get("route")
    if not route or not isinstance(exc, EngineError) or ref is None or ref.get("chunk") is not None:
        return False
    run_id, step_id, gen = ref["run"], ref["step"], int(ref["gen"])
    tried = [*route.get("tried", []), route["engine"]]
    node = rt.graph(run_id, gen).steps[step_id]
    routing = node.options.get("routing")
    if routing is None or len(tried) > rt.settings.max_fallbacks:
        return False
    if rt.state.status(run_id) not in ACTIVE or not live_left(rt.redis, rt.settings, routing, tried):
        return False
    error = {**error_info(exc), "engine": route["engine"], "worker": worker}
    log.warning("engine failed the step: re-routing it", run_id=run_id, step_id=step_id, tried=tried)
    rt.store.record_step(
        run_id, step_id, "step.rerouted", status="queued", worker=worker, error=error, route=route
    )
    args, kwargs = arguments(rt, run_id, node)
    past = superseded(route, "EngineError", worker=worker, error=error.get("message"))
    send_step(rt, run_id, gen, node, args, kwargs, exclude=tuple(tried), past=past)
    return True
