"""Message priorities: canvasflow's scale (0..9, 9 first) to the broker's, decided at the start.

A run's priority (``start(..., priority=)``) or a step's own (``@step(priority=)``,
``.set(priority=)``) is written into each step's options when the run starts, already in the
broker's terms, and journaled with the graph: the per-step publish passes the options as they
are (a run without priorities costs nothing), a resume keeps them, a compensation takes its
step's. RabbitMQ orders by the number, highest first, on queues declared with
``x-max-priority`` (``CANVASFLOW_QUEUE_MAX_PRIORITY``). kombu's Redis transport reads the lowest
number first (it keeps one list per step of ``priority_steps``), so there ``9 - p`` is sent.
"""

from __future__ import annotations

from typing import Any

from canvasflow.config.brokers import BrokerKind
from canvasflow.config.errors import InputError
from canvasflow.workflows.runtime.graph import StepGraph

LOWEST, HIGHEST = 0, 9
RUN_OPTION = "priority"  # graph option: the run's own priority, on canvasflow's scale


def checked(priority: Any, what: str = "priority") -> int:
    """``priority`` as an int from 0 to 9, or InputError."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not LOWEST <= priority <= HIGHEST:
        raise InputError(
            f"{what} must be an integer from {LOWEST} to {HIGHEST} (9 runs first), got {priority!r}"
        )
    return priority


def to_broker(priority: int, kind: BrokerKind) -> int:
    """The message priority the broker needs for canvasflow priority ``priority``."""
    return HIGHEST - priority if kind == "redis" else priority


def apply(graph: StepGraph, run_priority: int | None, kind: BrokerKind) -> None:
    """Put each step's priority into its options in the broker's terms: the run's when given,
    else the step's own; steps with neither stay without one."""
    if run_priority is not None:
        graph.options[RUN_OPTION] = checked(run_priority)
    for node in graph.steps.values():
        own = node.options.get("priority")
        p = run_priority if run_priority is not None else own
        if p is not None:
            node.options["priority"] = to_broker(checked(p, f"the priority of step {node.id}"), kind)


def run_priority(graph: StepGraph) -> int | None:
    """The priority a run was started with (None: none given)."""
    value = graph.options.get(RUN_OPTION)
    return int(value) if value is not None else None
