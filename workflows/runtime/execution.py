"""What a step or compensation knows about where it runs: ``context()``.

Inside a step body or a compensation that canvasflow dispatched::

    from canvasflow import context

    ctx = context()
    ctx.run_id, ctx.step_id, ctx.generation, ctx.attempt
    ctx.idempotency_key        # same across redeliveries and retries of one logical attempt
    ctx.workflow, ctx.version, ctx.queue, ctx.worker
    ctx.progress(3, 10, note="pages")   # a step's progress: get_run(id).steps[i].progress
    ctx.lineage                # [(run_id, step_id), ...] from the root run down to this step
    ctx.metadata["carrier"] = "dhl"   # a small run-level map every step of the run can read

The idempotency key is ``<run>:<step>:<generation>`` for a step (a chunk of a map step:
``<run>:<step>#<i>:<generation>``) and ``<run>:<step>:undo`` for a compensation. A body that
runs again after a crash, a Celery retry or a duplicated message sees the same key, so an
author can make its side effect happen once (e.g. pass it as the payment provider's
idempotency key, or ``SET key NX`` before the effect).

Reading ``workflow``/``version`` costs one Redis read, ``lineage`` one per ancestor, and
``metadata`` one per access; nothing is read unless asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import structlog

from canvasflow.config.errors import CanvasflowError
from canvasflow.workflows.runtime import progress
from canvasflow.workflows.runtime.context import Runtime, runtime

_current: ContextVar[ExecutionContext | None] = ContextVar("canvasflow_context", default=None)


class NoContext(CanvasflowError):
    """context() was called outside a step or compensation that canvasflow dispatched."""


def step_key(run_id: str, unit: str, generation: int) -> str:
    return f"{run_id}:{unit}:{generation}"


def undo_key(run_id: str, unit: str) -> str:
    return f"{run_id}:{unit}:undo"


@dataclass(frozen=True)
class ExecutionContext:
    """The run and step (or compensation) the current task body belongs to."""

    run_id: str
    step_id: str
    generation: int
    attempt: int
    idempotency_key: str
    queue: str | None = None
    worker: str | None = None
    compensation: bool = False
    _rt: Runtime | None = field(default=None, repr=False, compare=False)
    task: str | None = None  # the step's (or compensation's) task name

    def progress(self, done: float, total: float | None = None, note: str | None = None) -> None:
        """Report how far the step got (``done`` of ``total``, a short ``note``): kept in the
        run's state, shown by ``get_run(id).steps[i].progress`` and ``canvasflow status``."""
        progress.report(
            self._runtime,
            self.run_id,
            self.step_id,
            self.generation,
            done,
            total,
            note,
            task=self.task,
            attempt=self.attempt,
            queue=self.queue,
            worker=self.worker,
            compensation=self.compensation,
        )

    @cached_property
    def _labels(self) -> dict[str, str]:
        return self._runtime.state.labels(self.run_id)

    @property
    def _runtime(self) -> Runtime:
        if self._rt is None:
            return runtime()
        return self._rt

    @property
    def workflow(self) -> str | None:
        return self._labels.get("workflow") or None

    @property
    def version(self) -> str | None:
        return self._labels.get("version") or None

    @property
    def engine(self) -> str | None:
        """The engine part of the queue (``cap.<capability>.<engine>``), when routed to one."""
        parts = (self.queue or "").split(".")
        return parts[2] if len(parts) > 2 and parts[0] == "cap" else None

    @property
    def parent_run_id(self) -> str | None:
        return self._labels.get("parent_run") or None

    @property
    def parent_step(self) -> str | None:
        return self._labels.get("parent_step") or None

    @property
    def lineage(self) -> list[tuple[str, str]]:
        """``(run_id, step_id)`` from the root run down to this step (child runs of sub-workflows)."""
        chain = [(self.run_id, self.step_id)]
        labels = self._labels
        seen = {self.run_id}
        while labels.get("parent_run") and labels["parent_run"] not in seen:
            parent = labels["parent_run"]
            chain.append((parent, labels.get("parent_step", "")))
            seen.add(parent)
            labels = self._parent_labels(parent)
        return list(reversed(chain))

    def _parent_labels(self, run_id: str) -> dict[str, str]:
        labels = self._runtime.state.labels(run_id)
        if labels.get("workflow"):
            return labels
        record = self._runtime.store.get_run(run_id, with_steps=False)  # its hot state expired
        if record is None:
            return {}
        return {"parent_run": record.parent_run_id or "", "parent_step": record.parent_step or ""}

    @property
    def metadata(self) -> RunMetadata:
        """The run-level metadata map (JSON values), shared by every step of the run."""
        return RunMetadata(self._runtime, self.run_id)

    def log_fields(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "generation": self.generation,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
        }


class RunMetadata(MutableMapping[str, Any]):
    """A run's metadata map, live in Redis: every read and write goes to the run's state."""

    def __init__(self, rt: Runtime, run_id: str) -> None:
        self._rt = rt
        self._key = rt.state.key(run_id, "data")

    def __getitem__(self, name: str) -> Any:
        raw = self._rt.redis.hget(self._key, name)
        if raw is None:
            raise KeyError(name)
        return json.loads(raw)

    def __setitem__(self, name: str, value: Any) -> None:
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"run metadata {name!r} must be JSON ({exc})") from None
        self._rt.redis.hset(self._key, name, encoded)

    def __delitem__(self, name: str) -> None:
        if not self._rt.redis.hdel(self._key, name):
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return int(self._rt.redis.hlen(self._key))

    def to_dict(self) -> dict[str, Any]:
        raw = self._rt.redis.hgetall(self._key)
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}


def context() -> ExecutionContext:
    """The execution context of the step or compensation running in this task body."""
    ctx = _current.get()
    if ctx is None:
        raise NoContext(
            "context() is only available inside a step or compensation that canvasflow "
            "dispatched as part of a run (not in a plain Celery call of the task)"
        )
    return ctx


def current_context() -> ExecutionContext | None:
    """The execution context, or None outside a canvasflow step or compensation."""
    return _current.get()


@contextmanager
def executing(ctx: ExecutionContext) -> Iterator[ExecutionContext]:
    """Make ``ctx`` the current context, and bind its ids into every log line, for a body."""
    token = _current.set(ctx)
    try:
        with structlog.contextvars.bound_contextvars(**ctx.log_fields()):
            yield ctx
    finally:
        _current.reset(token)
