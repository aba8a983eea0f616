"""Which worker fleets a deployment needs, and how long each may take to stop. Pure functions.

A capability without engines gets one fleet consuming ``cap.<capability>``; a capability with
engines gets one fleet per engine consuming ``cap.<capability>.<engine>`` and the shared
``cap.<capability>`` (as ``canvasflow worker --capability C --engine E`` does). An engine that is
a workflow (``Engine(workflow=...)``) runs as child runs on the existing fleets: no fleet of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from canvasflow.config.queues import queue_for
from canvasflow.workers.engines import Engine

# the control worker runs coordinator tasks (start, sub-workflows, failure handling): short ones
CONTROL_LONGEST_TASK = 90


@dataclass(frozen=True)
class Longest:
    """The longest a capability's steps may run: ``seconds``, and whether every step declared a
    time limit (``declared``) or some did not and the setting's default stands in for them."""

    seconds: int
    declared: bool


@dataclass(frozen=True)
class Fleet:
    """One worker Deployment: what it consumes, how it is started, how long it may take to stop."""

    name: str  # Kubernetes-friendly: demo, ocr-gpu, control
    node: str  # the Celery node name before the @: demo, ocr.gpu, control
    queues: tuple[str, ...]
    args: tuple[str, ...]  # after the image's `canvasflow` entry point
    capability: str | None
    engine: str | None
    longest: Longest
    grace: int  # terminationGracePeriodSeconds


def longest_step(limits: Sequence[float | None], default: int) -> Longest:
    """The longest of the steps' time limits (``None``: a step without one, which may run up to
    ``default`` seconds as far as the deployment knows)."""
    known = [int(-(-limit // 1)) for limit in limits if limit]  # whole seconds, rounded up
    if known and len(known) == len(limits):
        return Longest(max(known), True)
    return Longest(max([default, *known]), False)


def grace_period(longest: Longest, margin: int) -> int:
    """``terminationGracePeriodSeconds``: the longest step plus ``margin`` for the worker to hand
    back its reserved messages, flush the journal and exit (warm shutdown)."""
    return longest.seconds + margin


def _fleet_name(*parts: str) -> str:
    return "-".join(parts).replace("_", "-")


def plan_fleets(
    step_limits: Mapping[str, Sequence[float | None]],
    engines: Iterable[Engine],
    *,
    default_seconds: int,
    margin: int,
    concurrency: int,
    control_queues: Sequence[str] = ("canvasflow", "canvasflow.control"),
    app: str | None = None,
) -> list[Fleet]:
    """The capability and engine fleets, sorted by name, then the control worker.

    ``step_limits``: capability -> the time limit of each of its steps (None where unset).
    A capability only an engine names (no step imported) still gets its fleets. ``app``: the
    project's Celery app (``canvasflow -A``), passed on to every worker."""
    adopt = ("-A", app) if app else ()
    by_cap: dict[str, list[Engine]] = {}
    for engine in engines:
        if engine.workflow is None:
            by_cap.setdefault(engine.capability, []).append(engine)
    fleets: list[Fleet] = []
    for cap in sorted(set(step_limits) | set(by_cap)):
        longest = longest_step(step_limits.get(cap, ()), default_seconds)
        grace = grace_period(longest, margin)
        shared = queue_for(cap)
        base = (*adopt, "worker", "--capability", cap)
        tail = ("--concurrency", str(concurrency))
        if cap not in by_cap:
            fleets.append(Fleet(_fleet_name(cap), cap, (shared,), (*base, *tail), cap, None, longest, grace))
            continue
        for e in sorted(by_cap[cap], key=lambda e: e.name):
            fleets.append(
                Fleet(
                    _fleet_name(cap, e.name),
                    f"{cap}.{e.name}",
                    (e.queue, shared),
                    (*base, "--engine", e.name, *tail),
                    cap,
                    e.name,
                    longest,
                    grace,
                )
            )
    control = Longest(CONTROL_LONGEST_TASK, True)
    fleets.append(
        Fleet(
            "control",
            "control",
            tuple(control_queues),
            (*adopt, "worker", "--control", "--concurrency", "4"),
            None,
            None,
            control,
            grace_period(control, margin),
        )
    )
    return fleets
