"""The rollback planner (pure): which compensations may run now, and is the rollback over?

A *unit* of compensation is a completed step whose task has a compensation, or one
chunk ``<map step>#<i>`` of a map step whose mapper has one: a completed chunk, or the
items a failed chunk completed before its failing item (state ``partial``). A unit may be
compensated once every unit and step *downstream* of it has settled: nothing downstream
is still in flight (queued or running: it may yet complete and need undoing first), and
every downstream unit is compensated or has failed to be. So compensation runs in reverse
dependency order, and independent branches roll back in parallel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from canvasflow.workflows.runtime.graph import StepGraph

IN_FLIGHT = frozenset({"queued", "running", "retrying"})
SETTLED = frozenset({"compensated", "compensation_failed", "not_needed"})


def node_of(unit: str) -> str:
    return unit.split("#", 1)[0]


@dataclass(frozen=True)
class RollbackPlan:
    ready: list[str]
    waiting: list[str]
    in_flight: list[str]
    failed: list[str]

    @property
    def done(self) -> bool:
        return not self.ready and not self.waiting and not self.in_flight


def compensable_units(
    graph: StepGraph, step_states: Mapping[str, str], comp_states: Mapping[str, str]
) -> list[str]:
    """Completed units that have a compensation (and did not complete by a fallback)."""
    units: list[str] = []
    for unit, state in step_states.items():
        if state not in ("succeeded", "partial") or comp_states.get(unit) == "not_needed":
            continue
        node = graph.steps.get(node_of(unit))
        if node is None or not node.compensation:
            continue
        is_chunk = "#" in unit
        if (node.kind == "map" and is_chunk) or (node.kind != "map" and not is_chunk):
            units.append(unit)
    return sorted(units, key=_graph_order(graph))


def plan(graph: StepGraph, step_states: Mapping[str, str], comp_states: Mapping[str, str]) -> RollbackPlan:
    """What to do next in a rollback, given every step's and compensation's state."""
    units = compensable_units(graph, step_states, comp_states)
    in_flight = sorted((s for s, st in step_states.items() if st in IN_FLIGHT), key=_graph_order(graph))
    descendants = {sid: _descendants(graph, sid) for sid in graph.steps}
    pending_by_node: dict[str, list[str]] = {}
    for unit in units:
        if comp_states.get(unit) not in SETTLED:
            pending_by_node.setdefault(node_of(unit), []).append(unit)
    busy_nodes = {node_of(s) for s in in_flight} | set(pending_by_node)

    ready: list[str] = []
    waiting: list[str] = []
    for unit in units:
        state = comp_states.get(unit)
        if state in SETTLED:
            continue
        if state is not None:  # dispatched or running: in hand already
            waiting.append(unit)
            continue
        blocked = descendants[node_of(unit)] & busy_nodes
        (waiting if blocked else ready).append(unit)
    failed = [u for u in units if comp_states.get(u) == "compensation_failed"]
    return RollbackPlan(ready=ready, waiting=waiting, in_flight=in_flight, failed=failed)


def _descendants(graph: StepGraph, step_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.successors(step_id))
    while stack:
        sid = stack.pop()
        if sid not in seen:
            seen.add(sid)
            stack.extend(graph.successors(sid))
    return seen


def _graph_order(graph: StepGraph):  # type: ignore[no-untyped-def]
    order = {sid: i for i, sid in enumerate(graph.steps)}

    def key(unit: str) -> tuple[int, int]:
        node, _, chunk = unit.partition("#")
        return order.get(node, len(order)), int(chunk) if chunk else -1

    return key
