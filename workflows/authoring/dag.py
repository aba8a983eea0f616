"""The DAG form: steps name what they need, and the dependencies follow from those names.

    Workflow("report", version="1", inputs=ReportInputs, steps={
        "users":  fetch_users.s(input("org")),
        "orders": fetch_orders.s(input("org"), days=value(30)),
        "joined": join.s(result("users"), result("orders")),
    })

``input("x")`` is a validated input, ``result("step")`` (optionally ``result("step", "key", 0)``)
another step's result, ``value(v)`` a literal. Steps whose references allow it run in
parallel; the compiled graph adds no other ordering. Cycles and references to unknown
steps or inputs are refused when the workflow is defined, each named.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from celery.canvas import Signature, maybe_signature

from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import DefinitionError, InputError
from canvasflow.workflows.runtime.compiler import (
    SPECIAL_KINDS,
    passed_options,
    routing_options,
    step_deadlines,
    task_queue,
)
from canvasflow.workflows.runtime.graph import Expr, StepGraph, StepNode, listof, lit, ref
from canvasflow.workflows.runtime.parallel import parts
from canvasflow.workflows.runtime.wire import PARALLEL_TASK


@dataclass(frozen=True)
class input:
    name: str


@dataclass(frozen=True)
class result:
    step: str
    path: tuple[Any, ...] = ()

    def __init__(self, step: str, *path: Any) -> None:
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "path", tuple(path))


@dataclass(frozen=True)
class value:
    value: Any


Lookup = Callable[[str], str | None]


@dataclass(frozen=True)
class _Part:
    """One step a DAG step expands to: its id, signature, dependencies and leading arguments."""

    id: str
    sig: Signature
    deps: list[str]
    lead: list[Expr]


def _walk(obj: Any) -> list[Any]:
    """Every marker inside an argument (lists, tuples and dict values are searched)."""
    if isinstance(obj, input | result | value):
        return [obj]
    if isinstance(obj, list | tuple):
        return [m for item in obj for m in _walk(item)]
    if isinstance(obj, dict):
        return [m for item in obj.values() for m in _walk(item)]
    return []


class Dag:
    """Named steps with references; validated on creation, compiled per run."""

    def __init__(
        self,
        name: str,
        steps: Mapping[str, Any],
        *,
        returns: str | None = None,
        input_names: set[str] | None = None,
    ) -> None:
        self.name = name
        self.steps: dict[str, Signature] = {
            k: maybe_signature(v, app=current_app()) for k, v in steps.items()
        }
        self.returns = returns
        self.deps: dict[str, list[str]] = {}
        problems: list[str] = []
        for sid, sig in self.steps.items():
            if not isinstance(sig, Signature) or sig.get("subtask_type"):
                problems.append(f"step {sid!r}: must be one task signature (use a sub-workflow for a canvas)")
                continue
            markers = _walk(list(sig.args)) + _walk(dict(sig.kwargs or {}))
            deps: list[str] = []
            for m in markers:
                if isinstance(m, result):
                    if m.step not in self.steps:
                        problems.append(f"step {sid!r}: result({m.step!r}) names no step")
                    elif m.step not in deps:
                        deps.append(m.step)
                elif isinstance(m, input) and input_names is not None and m.name not in input_names:
                    problems.append(f"step {sid!r}: input({m.name!r}) is not an input of {name}")
            self.deps[sid] = deps
        if returns is not None and returns not in self.steps:
            problems.append(f"returns={returns!r} names no step")
        problems.extend(f"cycle: {' -> '.join(c)}" for c in self._cycles())
        if problems:
            raise DefinitionError(f"invalid workflow {name}", problems)

    def _cycles(self) -> list[list[str]]:
        cycles: list[list[str]] = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(sid: str) -> None:
            state[sid] = 1
            stack.append(sid)
            for dep in self.deps.get(sid, []):
                if state.get(dep) == 1:
                    cycles.append([*stack[stack.index(dep) :], dep])
                elif dep not in state:
                    visit(dep)
            stack.pop()
            state[sid] = 2

        for sid in self.steps:
            if sid not in state:
                visit(sid)
        return cycles

    def input_names(self) -> list[str]:
        """Every input the steps read, in order of first use."""
        names: list[str] = []
        for sig in self.steps.values():
            for m in _walk(list(sig.args)) + _walk(dict(sig.kwargs or {})):
                if isinstance(m, input) and m.name not in names:
                    names.append(m.name)
        return names

    def sinks(self) -> list[str]:
        used = {d for deps in self.deps.values() for d in deps}
        return [sid for sid in self.steps if sid not in used]

    def compile(self, inputs: dict[str, Any], queue_of: Lookup, compensation_of: Lookup) -> StepGraph:
        def expr(obj: Any) -> Expr:
            if isinstance(obj, input):
                if obj.name not in inputs:
                    raise InputError(f"workflow {self.name}: missing input {obj.name!r}")
                return lit(inputs[obj.name])
            if isinstance(obj, value):
                return lit(obj.value)
            if isinstance(obj, result):
                e = ref(obj.step)
                if obj.path:
                    e["p"] = list(obj.path)
                return e
            if _walk(obj):
                if isinstance(obj, dict):
                    return {"d": {k: expr(v) for k, v in obj.items()}}
                return listof([expr(v) for v in obj])
            try:
                json.dumps(obj)
            except (TypeError, ValueError) as exc:
                raise InputError(f"workflow {self.name}: argument {obj!r} is not JSON ({exc})") from None
            return lit(obj)

        nodes: dict[str, StepNode] = {}
        deadlines: dict[str, dict[str, float]] = {}
        problems: list[str] = []

        def node(sid: str, sig: Signature, deps: list[str], lead: list[Expr]) -> StepNode:
            kind = SPECIAL_KINDS.get(sig.task, "task")
            kwargs = {k: expr(v) for k, v in (sig.kwargs or {}).items()}
            spec: dict[str, Any] = {}
            if kind != "task":
                spec = {k: v.get("v") for k, v in kwargs.items()}
                kwargs = {}
            options = passed_options(current_app(), sig)
            routed_by = spec["mapper"]["task"] if kind == "map" else sig.task
            if "queue" not in options:  # a step given its queue explicitly is not routed
                options.update(routing_options(routed_by))
            options.setdefault("queue", queue_of(routed_by) or task_queue(current_app(), routed_by))
            if found := step_deadlines(current_app(), sig, sid, options, problems):
                deadlines[sid] = found
            return StepNode(
                id=sid,
                task=sig.task,
                args=[*lead, *(expr(a) for a in sig.args)],
                kwargs=kwargs,
                deps=deps,
                options=options,
                kind=kind,  # type: ignore[arg-type]
                spec=spec,
                compensation=compensation_of(routed_by),
            )

        for sid in self._order():
            sig = self.steps[sid]
            if sig.task != PARALLEL_TASK:
                nodes[sid] = node(sid, sig, list(self.deps[sid]), [])
                continue
            for part in self._parallel(sid, sig):  # one member per live engine, then the aggregate
                nodes[part.id] = node(part.id, part.sig, part.deps, part.lead)
        if self.returns is not None:
            out = ref(self.returns)
        else:
            sinks = self.sinks()
            out = ref(sinks[0]) if len(sinks) == 1 else {"d": {s: ref(s) for s in sinks}}
        if problems:
            raise DefinitionError(f"workflow {self.name}: invalid steps", problems)
        return StepGraph(nodes, out, options={"deadlines": deadlines} if deadlines else {})

    def _parallel(self, sid: str, sig: Signature) -> list[_Part]:
        """The steps a ``parallel_capability`` DAG step stands for: ``<sid>.<engine>`` members,
        the aggregate (``<sid>``, or ``<sid>.all`` before the author's aggregator step ``<sid>``)."""
        members, body, author = parts(sig)
        ids = [f"{sid}.{name}" for name, _ in members]
        taken = sorted(set([*ids, f"{sid}.all"]) & set(self.steps))
        if taken:
            raise DefinitionError(
                f"workflow {self.name}: step {sid!r} (parallel_capability) needs the ids {taken}"
            )
        out = [_Part(i, m, list(self.deps[sid]), []) for i, (_, m) in zip(ids, members, strict=True)]
        join = sid if author is None else f"{sid}.all"
        out.append(_Part(join, body, ids, [listof([ref(i) for i in ids])]))
        if author is not None:
            out.append(_Part(sid, author, [join, *self.deps[sid]], [ref(join)]))
        return out

    def _order(self) -> list[str]:
        """Steps in dependency order (stable: definition order among the ready)."""
        done: list[str] = []
        seen: set[str] = set()
        while len(done) < len(self.steps):
            for sid in self.steps:
                if sid not in seen and all(d in seen for d in self.deps[sid]):
                    done.append(sid)
                    seen.add(sid)
        return done
