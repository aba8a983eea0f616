"""Compile any Celery canvas into a StepGraph (pure: no broker, no database).

Results flow exactly as Celery passes them: a chained part receives the previous
part's result as its first positional argument; a group's result is the list of its
members' results, nested groups spliced in order; a chord body receives the list of
header results. Celery's chain quirks are kept: a one-member group in a chain is that
member, and an empty group between other parts is dropped.

Errbacks the author attached (``link_error``/``on_error``) become graph errbacks with
the set of steps whose failure reaches them; an errback on a chord body is also
reached by failures in that chord's header, as Celery documents. The same errback
signature attached in several places (Celery clones a group's errback onto each
member) is one errback, so it fires once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.canvas import Signature, _chain, _chord, group, maybe_signature

from canvasflow.config.celery_app import CONTROL_TASKS
from canvasflow.config.errors import DefinitionError, InputError
from canvasflow.config.queues import queue_for
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workflows.runtime.graph import Errback, Expr, StepGraph, StepNode, listof, lit, ref
from canvasflow.workflows.runtime.parallel import expand
from canvasflow.workflows.runtime.wire import (
    MAP_TASK,
    PARALLEL_TASK,
    SIGNAL_TASK,
    SLEEP_TASK,
    WORKFLOW_TASK,
    is_step,
)

SPECIAL_KINDS = {MAP_TASK: "map", SIGNAL_TASK: "signal", WORKFLOW_TASK: "workflow", SLEEP_TASK: "sleep"}
PASSED_OPTIONS = ("queue", "priority", "countdown", "expires", "time_limit", "soft_time_limit")
STEP_DEADLINES = ("schedule_to_start", "start_to_close")
HARD_LIMIT_GRACE = 5.0  # seconds from start_to_close (Celery's soft limit) to the hard kill


@dataclass(frozen=True)
class _Flow:
    """What the next part of a canvas receives: a value (or none) and what it waits for."""

    value: Expr | None
    after: tuple[str, ...]


Lookup = Callable[[str], str | None]


class CanvasCompiler:
    """One compilation; use :func:`compile_canvas`."""

    def __init__(self, app: Celery, queue_of: Lookup, compensation_of: Lookup) -> None:
        self.app = app
        self.queue_of = queue_of
        self.compensation_of = compensation_of
        self.steps: dict[str, StepNode] = {}
        self.errbacks: dict[str, Errback] = {}
        self.deadlines: dict[str, dict[str, float]] = {}
        self.problems: list[str] = []

    # -- entry -----------------------------------------------------------------
    def compile(self, canvas: Any) -> StepGraph:
        flow, _ = self._part(self._sig(canvas), _Flow(None, ()), "")
        if self.problems:
            raise DefinitionError("invalid canvas", self.problems)
        result = flow.value if flow.value is not None else lit(None)
        options: dict[str, Any] = {"deadlines": self.deadlines} if self.deadlines else {}
        return StepGraph(self.steps, result, list(self.errbacks.values()), options)

    # -- dispatch on canvas type -------------------------------------------------
    def _sig(self, obj: Any) -> Signature:
        sig = maybe_signature(obj, app=self.app)
        if not isinstance(sig, Signature):
            raise DefinitionError(f"not a Celery canvas: {obj!r}")
        return sig

    def _part(self, sig: Signature, flow: _Flow, path: str) -> tuple[_Flow, list[str]]:
        if sig.task == PARALLEL_TASK:  # parallel_capability: one member per live engine, now
            sig = self._sig(expand(sig))
        if isinstance(sig, _chain):
            out, steps = self._chain(sig, flow, path)
        elif isinstance(sig, _chord):
            out, steps = self._chord(sig, flow, path)
        elif isinstance(sig, group):
            out, steps = self._group(list(sig.tasks), sig.args, flow, path)
        else:
            out, steps = self._task(sig, flow, path)
        if not isinstance(sig, _chord):
            self._errbacks(sig, steps)
        if not isinstance(sig, group):
            self._links(sig, out, path)
        return out, steps

    def _chain(self, sig: _chain, flow: _Flow, path: str) -> tuple[_Flow, list[str]]:
        parts = [self._sig(t) for t in sig.tasks]
        parts = [p.tasks[0] if isinstance(p, group) and len(p.tasks) == 1 else p for p in parts]
        parts = [self._sig(p) for p in parts]
        if len(parts) > 1:
            parts = [p for p in parts if not (isinstance(p, group) and not _chord_like(p) and not p.tasks)]
        if sig.args and parts:
            parts[0] = parts[0].clone(args=tuple(sig.args))
        steps: list[str] = []
        for i, part in enumerate(parts):
            flow, inner = self._part(part, flow, f"{path}{i}.")
            steps.extend(inner)
        return flow, steps

    def _group(self, members: list[Any], args: Any, flow: _Flow, path: str) -> tuple[_Flow, list[str]]:
        values: list[Expr] = []
        after: list[str] = []
        steps: list[str] = []
        for i, member in enumerate(_spliced(self, members)):
            if args:
                member = member.clone(args=tuple(args))
            out, inner = self._part(member, flow, f"{path}{i}.")
            steps.extend(inner)
            values.append(out.value if out.value is not None else lit(None))
            after.extend(out.after)
        if not steps:
            return _Flow(listof(values), flow.after), steps
        return _Flow(listof(values), tuple(dict.fromkeys(after))), steps

    def _chord(self, sig: _chord, flow: _Flow, path: str) -> tuple[_Flow, list[str]]:
        header = sig.tasks.tasks if isinstance(sig.tasks, group) else sig.tasks
        joined, head_steps = self._group(list(header or []), sig.args, flow, f"{path}h")
        body = self._sig(sig.body)
        out, body_steps = self._part(body, joined, f"{path}b.")
        # an errback on the body is reached by a failure anywhere in the header
        for eb in self.errbacks.values():
            if set(eb.scope) & set(body_steps) and _attached_to(body, eb.signature):
                eb.scope = list(dict.fromkeys([*eb.scope, *head_steps]))
        self._errbacks(sig, head_steps + body_steps)
        return out, head_steps + body_steps

    def _task(self, sig: Signature, flow: _Flow, path: str) -> tuple[_Flow, list[str]]:
        name = sig.task
        short = name.rsplit(".", 1)[-1]
        step_id = f"{path}{short}" if path else short
        sig_options = sig.options  # a Signature's fields are descriptors over its dict: read once
        args: list[Expr] = []
        if flow.value is not None and not sig.immutable:
            args.append(flow.value)
        args.extend(self._literal(a, step_id) for a in sig.args)
        kwargs = {k: self._literal(v, step_id) for k, v in (sig.kwargs or {}).items()}
        options = passed_options(self.app, sig, sig_options)
        kind = SPECIAL_KINDS.get(name, "task")
        spec: dict[str, Any] = {}
        if kind != "task":
            spec = {k: v["v"] for k, v in kwargs.items()}
            kwargs = {}
        if kind == "workflow":
            spec.setdefault("inputs", {})
        routed_by = spec["mapper"]["task"] if kind == "map" else name
        if "queue" not in options:  # a step given its queue explicitly is not routed
            options.update(routing_options(routed_by))
        options.setdefault("queue", self.queue_of(routed_by) or self._task_queue(routed_by))
        self._check_task(name, kind)
        self._deadlines(sig, step_id, options)
        self.steps[step_id] = StepNode(
            id=step_id,
            task=name,
            args=args,
            kwargs=kwargs,
            deps=list(flow.after),
            options=options,
            kind=kind,  # type: ignore[arg-type]
            spec=spec,
            compensation=self.compensation_of(routed_by),
        )
        return _Flow(ref(step_id), (step_id,)), [step_id]

    def _deadlines(self, sig: Signature, step_id: str, options: dict[str, Any]) -> None:
        found = step_deadlines(self.app, sig, step_id, options, self.problems)
        if found:
            self.deadlines[step_id] = found

    # -- callbacks and errbacks ----------------------------------------------------
    def _links(self, sig: Signature, out: _Flow, path: str) -> None:
        for i, cb in enumerate(sig.options.get("link") or []):
            self._part(self._sig(cb), out, f"{path}link{i}.")

    def _errbacks(self, sig: Signature, scope: list[str]) -> None:
        for eb in sig.options.get("link_error") or []:
            signature = dict(self._sig(eb))
            key = _canonical(signature)
            if key in self.errbacks:
                known = self.errbacks[key]
                known.scope = list(dict.fromkeys([*known.scope, *scope]))
                if known.signature.get("immutable") and not signature.get("immutable"):
                    known.signature = signature  # Celery's header copy is an immutable clone
            else:
                self.errbacks[key] = Errback(signature=signature, scope=list(scope))

    # -- checks ----------------------------------------------------------------------
    def _literal(self, value: Any, step_id: str) -> Expr:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"step {step_id}: argument {value!r} is not JSON ({exc})") from None
        return lit(value)

    def _task_queue(self, name: str) -> str:
        return task_queue(self.app, name)

    def _check_task(self, name: str, kind: str) -> None:
        if kind != "task":
            return
        task = self.app.tasks.get(name)
        if task is not None and not is_step(task):
            self.problems.append(f"task {name} is not a canvasflow step: decorate it with @step")


def passed_options(app: Celery, sig: Signature, sig_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Celery options of ``sig`` a step keeps, with the step's own ``@step(priority=)``
    (``sig_options``: ``sig.options`` when already read: each read goes through a descriptor)."""
    if sig_options is None:
        sig_options = sig.options
    options = {k: sig_options[k] for k in PASSED_OPTIONS if sig_options.get(k) is not None}
    if "priority" not in options and (own := getattr(app.tasks.get(sig.task), "priority", None)) is not None:
        options["priority"] = own
    return options


def step_deadlines(
    app: Celery, sig: Signature, step_id: str, options: dict[str, Any], problems: list[str]
) -> dict[str, float]:
    """A step's ``schedule_to_start`` / ``start_to_close`` (``.set(...)`` on the signature, else
    ``@step(...)``); ``start_to_close`` also becomes Celery's soft and hard time limits in
    ``options``. A bad value is added to ``problems``."""
    task = app.tasks.get(sig.task)
    sig_options = sig.options
    found: dict[str, float] = {}
    for name in STEP_DEADLINES:
        value = sig_options.get(name, getattr(task, name, None))
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append(f"step {step_id}: {name} must be a positive number of seconds, not {value!r}")
            continue
        found[name] = float(value)
    if "start_to_close" in found:  # Celery interrupts the body in its own process
        options.setdefault("soft_time_limit", found["start_to_close"])
        options.setdefault("time_limit", found["start_to_close"] + HARD_LIMIT_GRACE)
    return found


def task_queue(app: Celery, name: str) -> str:
    """Where a step of task ``name`` goes unrouted: its ``queue`` attribute (a plain Celery task
    declared so), the control queue for canvasflow's control tasks (through ``task_routes``),
    else its capability's queue, else the default queue."""
    task = app.tasks.get(name)
    queue = getattr(task, "queue", None)
    if not queue and name in CONTROL_TASKS:
        route = app.amqp.router.lookup_route(name, (), {}, {}, task)
        found = route.get("queue") if isinstance(route, dict) else route
        queue = getattr(found, "name", found)
    capability = getattr(task, "capability", None)  # else a step's queue is its capability's
    if not queue and isinstance(capability, str):
        queue = queue_for(capability)
    return str(queue or app.conf.task_default_queue)


def routing_options(task_name: str) -> dict[str, Any]:
    """``{"routing": ...}`` for a step the router places when it becomes ready (docs/routing.md)."""
    routing = capabilities.routing_of(task_name)
    return {} if routing is None else {"routing": routing}


def _chord_like(sig: Signature) -> bool:
    return isinstance(sig, _chord)


def _spliced(compiler: CanvasCompiler, members: list[Any]) -> list[Signature]:
    """Group members with nested groups spliced in place, in the order written."""
    out: list[Signature] = []
    for m in members:
        sig = compiler._sig(m)
        if isinstance(sig, group) and not isinstance(sig, _chord):
            out.extend(_spliced(compiler, list(sig.tasks)))
        else:
            out.append(sig)
    return out


def _canonical(signature: dict[str, Any]) -> str:
    core = {k: signature.get(k) for k in ("task", "args", "kwargs", "subtask_type")}
    return json.dumps(core, sort_keys=True, default=repr)


def _attached_to(sig: Signature, signature: dict[str, Any]) -> bool:
    """Whether ``signature`` is an errback of ``sig``; a group body has it on its members
    (Celery's ``group.link_error`` clones it onto each one)."""
    key = _canonical(signature)
    if any(_canonical(dict(maybe_signature(e))) == key for e in sig.options.get("link_error") or []):
        return True
    if isinstance(sig, group) and not isinstance(sig, _chord):
        return any(_attached_to(maybe_signature(m), signature) for m in sig.tasks)
    return False


def compile_canvas(
    canvas: Any,
    app: Celery,
    queue_of: Lookup = lambda _: None,
    compensation_of: Lookup = lambda _: None,
) -> StepGraph:
    """Compile ``canvas`` to a StepGraph; raise DefinitionError listing every problem."""
    return CanvasCompiler(app, queue_of, compensation_of).compile(canvas)
