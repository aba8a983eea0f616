"""``@step``: a plain function becomes a Celery task that canvasflow can journal.

A step is an ordinary Celery task (callable, ``.s()``, ``.delay()``, visible in Flower).
When canvasflow dispatches it as part of a run, the message carries a ``canvasflow``
header naming the run and step; the task then claims, runs and completes the step
through the workflow runtime. Without that header it behaves exactly like plain Celery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from celery import Task
from celery.canvas import Signature
from celery.result import AsyncResult

from canvasflow.config.celery_app import current_app
from canvasflow.workers.admission import admitted
from canvasflow.workers.capabilities import registry
from canvasflow.workers.hybrid import add_implementation, engines_of
from canvasflow.workers.limits.spec import Limit, as_limits
from canvasflow.workflows.runtime.executor import run_step
from canvasflow.workflows.runtime.wire import HEADER

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class TypedTask(Protocol[P, R_co]):
    """What type checkers see of a step (or compensation): the function's own signature.

    Calling it, ``.delay()`` and ``.run()`` take the function's parameters and return its
    result type. ``.s()`` and ``.si()`` stay loose: in a chain or chord the previous result
    is prepended at run time, and DAG steps take ``input()``/``result()`` placeholders. Every
    other attribute of the Celery task is there, typed ``Any``.
    """

    name: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def run(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult: ...
    def s(self, *args: Any, **kwargs: Any) -> Signature: ...
    def si(self, *args: Any, **kwargs: Any) -> Signature: ...
    def apply_async(
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> AsyncResult: ...
    def __getattr__(self, name: str) -> Any: ...


def autoretry(
    retries: int, retry_on: tuple[type[BaseException], ...], backoff: bool | int, backoff_max: int
) -> dict[str, Any]:
    """Celery autoretry options: ``retries`` retries on ``retry_on``, exponential backoff, no jitter."""
    if not retries:
        return {}
    return {
        "autoretry_for": retry_on,
        "max_retries": retries,
        "retry_backoff": backoff,
        "retry_backoff_max": backoff_max,
        "retry_jitter": False,
    }


class StepTask(Task):
    """Base class of every step task."""

    capability: str = "default"
    route: str | None = None
    requires: dict[str, Any] = {}
    limits: tuple[Limit, ...] = ()
    abstract = True
    canvasflow_step = True  # wire.STEP_MARKER: the runtime asks the task (wire.is_step), not its class
    # on the task, not only the app: they hold on an adopted app whatever its own defaults
    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ref = self.request.get(HEADER) if self.request else None
        if ref is None:  # plain Celery; a canvasflow header, even empty, is checked by run_step
            return self.run(*args, **kwargs)
        with admitted(self, ref, args, kwargs):  # a limited step is published again for later
            return run_step(self, ref, args, kwargs)


@overload
def step(fn: Callable[P, R]) -> TypedTask[P, R]: ...
@overload
def step(
    fn: None = None,
    *,
    name: str | None = None,
    capability: str = "default",
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    retry_backoff: bool | int = True,
    retry_backoff_max: int = 600,
    on_failure: str = "compensate",
    fallback: Any = None,
    writes: bool = False,
    secret: bool | Sequence[str] = False,
    route: str | None = None,
    requires: dict[str, Any] | None = None,
    engine: str | None = None,
    limits: Limit | Sequence[Limit] | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], TypedTask[P, R]]: ...


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    capability: str = "default",
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    retry_backoff: bool | int = True,
    retry_backoff_max: int = 600,
    on_failure: str = "compensate",
    fallback: Any = None,
    writes: bool = False,
    secret: bool | Sequence[str] = False,
    route: str | None = None,
    requires: dict[str, Any] | None = None,
    engine: str | None = None,
    limits: Limit | Sequence[Limit] | None = None,
    **options: Any,
) -> Any:
    """Turn ``fn`` into a step task routed to ``cap.<capability>``.

    ``name`` defaults to ``<module>.<function>``; give one explicitly when the function
    may move, since the name is what messages and journals refer to.

    Failure policy, once ``retries`` (Celery autoretry on ``retry_on``, exponential
    backoff) are spent: ``on_failure="compensate"`` (the default) fails the run and rolls
    back its completed steps; ``on_failure="continue"`` completes the step with
    ``fallback`` and the run goes on. ``writes=True`` marks a step with side effects:
    ``canvasflow check`` names such steps that have no compensation. ``secret=["card"]``
    (or ``True``: every argument) keeps those arguments out of events, logs and the journal.

    Routing (docs/routing.md): when ``capability`` has engines, the router picks one when
    the step becomes ready, with strategy ``route`` (default: the workflow's, then the
    settings') among the engines offering ``requires`` (e.g. ``{"gpu": 1}``). With ``engine=``,
    ``fn`` is that engine's implementation of the step: declare one per engine under one name. The queue is
    chosen at publish time; a plain ``.delay()`` goes to ``cap.<capability>`` (``task_routes``).

    Limits (docs/limits.md): ``limits=Limit(rate="5/s", concurrency=10, key=...)`` (or a list)
    hold across every worker; a step over its limit waits without holding a worker process.
    (Celery's own ``rate_limit=`` still passes through, and holds per worker process only.)
    """
    if on_failure not in ("compensate", "continue"):
        raise ValueError(f"on_failure must be 'compensate' or 'continue', not {on_failure!r}")

    def decorate(func: Callable[P, R]) -> TypedTask[P, R]:
        task_name = name or f"{func.__module__}.{func.__name__}"
        if task_name.startswith("__main__."):
            raise ValueError(f"step {func.__name__}: give an explicit name= when defined in __main__")
        body: Callable[..., Any] = func
        if engine is not None:  # one implementation of a hybrid step (workers/hybrid.py)
            body, _ = add_implementation(task_name, engine, func)
        task = current_app().task(
            body,
            name=task_name,
            base=StepTask,
            capability=capability,
            on_failure_policy=on_failure,
            fallback=fallback,
            writes=writes,
            secret_fields=True if secret is True else tuple(secret or ()),
            route=route,
            requires=dict(requires or {}),
            limits=as_limits(limits, task_name),
            **autoretry(retries, retry_on, retry_backoff, retry_backoff_max),
            **options,
        )
        registry.register(
            task_name,
            capability,
            strategy=route,
            requires=dict(requires or {}),
            engines=engines_of(task_name) if engine is not None else None,
        )
        return cast("TypedTask[P, R]", task)

    return decorate(fn) if fn is not None else decorate
