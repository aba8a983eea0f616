"""The step graph: what a canvas compiles to, stored with each run.

A graph is plain data (JSON round-trips exactly), so the executor, the planner and the
pictures never need the canvas again. Argument values are *expressions*, tagged dicts:

* ``{"v": x}``      a literal JSON value
* ``{"r": "s1"}``   the journaled result of step ``s1``
* ``{"r": "s1", "p": ["a", 0]}`` an item inside that result (DAG form)
* ``{"l": [e...]}`` a list built from other expressions (a group's result)
* ``{"d": {k: e}}`` a dict built from other expressions (DAG form)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Expr = dict[str, Any]
StepKind = Literal["task", "map", "signal", "workflow", "sleep"]


def lit(value: Any) -> Expr:
    return {"v": value}


def ref(step_id: str) -> Expr:
    return {"r": step_id}


def listof(items: list[Expr]) -> Expr:
    return {"l": items}


def refs_in(expr: Expr) -> Iterator[str]:
    """Every step id an expression reads, in order of appearance."""
    if "r" in expr:
        yield expr["r"]
    elif "l" in expr:
        for item in expr["l"]:
            yield from refs_in(item)
    elif "d" in expr:
        for item in expr["d"].values():
            yield from refs_in(item)


def resolve(expr: Expr, results: Mapping[str, Any]) -> Any:
    """The value of an expression given the results of the steps it reads."""
    if "v" in expr:
        return expr["v"]
    if "r" in expr:
        value = results[expr["r"]]
        for key in expr.get("p", ()):
            value = value[key]
        return value
    if "l" in expr:
        return [resolve(item, results) for item in expr["l"]]
    return {k: resolve(item, results) for k, item in expr["d"].items()}


@dataclass
class StepNode:
    """One step: a task message to send once every step in ``deps`` has completed."""

    id: str
    task: str
    args: list[Expr] = field(default_factory=list)
    kwargs: dict[str, Expr] = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    kind: StepKind = "task"
    spec: dict[str, Any] = field(default_factory=dict)
    compensation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The node as JSON-ready data (as ``asdict``, without its deep copy: the caller
        serialises it; every field is plain data)."""
        return {
            "id": self.id,
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "deps": list(self.deps),
            "options": dict(self.options),
            "kind": self.kind,
            "spec": dict(self.spec),
            "compensation": self.compensation,
        }

    def reads(self) -> set[str]:
        found: set[str] = set()
        for e in [*self.args, *self.kwargs.values()]:
            found.update(refs_in(e))
        return found


@dataclass
class Errback:
    """An author's link_error signature and the steps whose failure reaches it."""

    signature: dict[str, Any]
    scope: list[str]


@dataclass
class StepGraph:
    """Steps in dispatch order, the expression of the run's result, and author errbacks."""

    steps: dict[str, StepNode]
    result: Expr
    errbacks: list[Errback] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        succ: dict[str, list[str]] = {sid: [] for sid in self.steps}
        for node in self.steps.values():
            for dep in node.deps:
                succ[dep].append(node.id)
        self._successors = succ

    def successors(self, step_id: str) -> list[str]:
        return self._successors[step_id]

    def roots(self) -> list[str]:
        return [sid for sid, node in self.steps.items() if not node.deps]

    def ready(self, completed: set[str]) -> list[str]:
        """Steps not yet completed whose dependencies all are."""
        return [
            sid
            for sid, node in self.steps.items()
            if sid not in completed and all(d in completed for d in node.deps)
        ]

    def ancestors(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.steps[step_id].deps)
        while stack:
            sid = stack.pop()
            if sid not in seen:
                seen.add(sid)
                stack.extend(self.steps[sid].deps)
        return seen

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [n.to_json() for n in self.steps.values()],
            "result": self.result,
            "errbacks": [asdict(e) for e in self.errbacks],
            "options": self.options,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepGraph:
        steps = {s["id"]: StepNode(**s) for s in data["steps"]}
        errbacks = [Errback(**e) for e in data.get("errbacks", [])]
        return cls(
            steps=steps, result=data["result"], errbacks=errbacks, options=dict(data.get("options") or {})
        )
