"""Fan-out bundles: a wide ready set travels as fewer messages, each carrying a few siblings.

Every message costs the fleet the same around the step, whatever the step does: the publish,
the broker, the worker's fetch, reservation and hand-off to a pool process, the
acknowledgement, and the worker events Flower reads. With a wide fan-out (a chord's header, a
big group) that cost, paid in the worker's single main process, is what bounds throughput.

When a ready set holds at least ``2 x fanout_spread`` plain steps for one queue (task steps
with no routing, countdown, eta, priority, expiry, limits or time limits), they are cut into
about ``fanout_spread`` messages: each is the first sibling's own message, and its ``canvasflow``
header lists the others (``then``). The worker that takes it runs them after it, one by one,
the way it runs a fused successor (fusion.py): each is claimed, completed and journaled as a
step of its own. So a fan-out still starts at least ``fanout_spread`` steps at once across the
fleet, and a bundle holds no sibling back for long: once its delivery has run ``fuse_budget``
seconds, the siblings it has not started are published as messages of their own.

Crash safety: a sibling that was not started is ``queued`` with no message of its own; the
heartbeat of the worker holding the bundle lists it as held, and the broker search of the
recovery sweep finds it in the bundle's message, so it is not taken for lost while the bundle
waits. If the worker dies, the bundle is delivered again and runs what is left.
"""

from __future__ import annotations

import math

from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.fusion import fusable_task
from canvasflow.workflows.runtime.graph import StepGraph, StepNode


def plan(rt: Runtime, graph: StepGraph, step_ids: list[str]) -> dict[str, list[str]]:
    """The bundles of a ready set: first sibling -> the siblings its message carries."""
    s = rt.settings
    spread = s.fanout_spread
    if spread <= 0 or s.fuse_hops <= 0 or len(step_ids) < 2 * spread or graph.options.get("deadlines"):
        return {}
    by_queue: dict[str, list[str]] = {}
    for sid in step_ids:
        node = graph.steps[sid]
        if _plain(rt, node):
            by_queue.setdefault(node.options["queue"], []).append(sid)
    out: dict[str, list[str]] = {}
    for sids in by_queue.values():
        if len(sids) < 2 * spread:
            continue
        size = min(math.ceil(len(sids) / spread), s.fuse_hops + 1)
        for i in range(0, len(sids), size):
            first, *rest = sids[i : i + size]
            if rest:
                out[first] = rest
    return out


def _plain(rt: Runtime, node: StepNode) -> bool:
    """A step the worker could run after another one: see fusion._fusable (checked again there)."""
    if node.kind != "task" or set(node.options) != {"queue"}:
        return False
    return fusable_task(rt, rt.app.tasks.get(node.task))
