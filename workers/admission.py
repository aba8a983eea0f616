"""The gate before a step's claim: admitted under its limits, or published again for later.

``StepTask.__call__`` wraps each canvasflow delivery of a step in :func:`admitted`. For a step
with limits (its own ``@step(limits=...)``, and its capability's from
``CANVASFLOW_CAPABILITY_LIMITS``) each limit is asked in turn:

* all admit: the step is claimed and runs; its concurrency slots are held (leases renewed)
  until the delivery ends, then released;
* one says wait: the slots taken so far are given back and the very same message (task id,
  arguments, canvasflow header, errback) is published again with a countdown, and this delivery
  ends (``Ignore``: acknowledged, no errback). The pool process is free meanwhile. Rate turns
  already booked travel with the message (header ``canvasflow_limits``) so they are not paid
  twice. A deferral is no attempt: the step is not claimed, its attempts do not change, the run
  stays running; the first one is journaled (step status ``limited``, event ``step.limited``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore

from canvasflow.config.errors import DefinitionError
from canvasflow.workers.limits.spec import Limit, capability_limits
from canvasflow.workers.limits.store import ADMITTED, BOOKED, LeaseKeeper, LimitStore, limit_base
from canvasflow.workflows.runtime import wire
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.runtime.state import ACTIVE

log = structlog.get_logger("canvasflow.limits")
LIMITS_HEADER = "canvasflow_limits"
_POLL_FIRST = 0.1  # seconds before a step waiting for a slot looks again (doubling, up to max_wait)
_process: dict[str, Any] = {}  # this process's store, lease keeper and parsed capability limits


def limits_of(task: Task, settings: Any) -> tuple[Limit, ...]:
    """The step's own limits, then its capability's (from the settings)."""
    own: tuple[Limit, ...] = getattr(task, "limits", ())
    raw = settings.capability_limits
    if not raw:
        return own
    cached = _process.get("capability_limits")
    if cached is None or cached[0] is not raw:
        cached = _process["capability_limits"] = (raw, capability_limits(raw))
    cap = cached[1].get(str(getattr(task, "capability", "")))
    return own if cap is None else (*own, cap)


def _parts(rt: Any) -> tuple[LimitStore, LeaseKeeper]:
    key = (id(rt.redis), rt.settings.limit_lease_ttl)
    if _process.get("key") != key:
        store = LimitStore(rt.redis)
        _process.update(key=key, store=store, keeper=LeaseKeeper(store, rt.settings.limit_lease_ttl))
    return _process["store"], _process["keeper"]


@contextmanager
def admitted(task: Task, ref: Any, args: tuple, kwargs: dict) -> Iterator[None]:
    """Run the block once every limit of ``task`` admits this delivery; else defer it (Ignore)."""
    rt = runtime()
    limits = limits_of(task, rt.settings)
    if not limits or not _checkable(rt, ref):
        yield
        return
    store, keeper = _parts(rt)
    ticket = dict(task.request.get(LIMITS_HEADER) or {})
    paid = set(ticket.get("paid") or [])
    holder = f"{task.request.id}:{uuid.uuid4().hex[:8]}"
    held: list[str] = []
    waits: list[float] = []
    settings = rt.settings
    horizon = _max_wait(settings)
    for limit in limits:
        base = limit_base(settings.key_prefix, limit.name or task.name, _key_of(limit, args, kwargs))
        grant = store.acquire(
            base,
            per_second=limit.per_second,
            burst=limit.burst,
            concurrency=limit.concurrency,
            lease=settings.limit_lease_ttl,
            horizon=horizon,
            holder=holder,
            paid=base in paid,
        )
        if limit.rate is not None and grant.outcome in (ADMITTED, BOOKED):
            paid.add(base)
        if grant.outcome == ADMITTED:
            if limit.concurrency is not None:
                keeper.hold(base, holder)
                held.append(base)
        elif grant.wait >= 0:  # booked for then, or the rate's next free turn is that far off
            waits.append(grant.wait)
        else:  # no slot: look again, later each time
            n = int(ticket.get("deferrals") or 0)
            waits.append(min(horizon, _POLL_FIRST * 2**n) * random.uniform(0.5, 1.0))
    if waits:
        for base in held:
            keeper.release(base, holder)
        _defer(rt, task, ref, args, kwargs, min(max(waits), horizon), paid, ticket)
    custom = getattr(task.request, "headers", None)
    if isinstance(custom, dict):  # spent: a Celery retry of this delivery asks the limits afresh
        custom.pop(LIMITS_HEADER, None)
    try:
        yield
    finally:
        for base in held:
            keeper.release(base, holder)


def _checkable(rt: Any, ref: Any) -> bool:
    """A well-formed header of a known run that still wants its steps; anything else goes through
    (the executor refuses a bad message, the claim skips a step of an ended run)."""
    if wire.header_problem(ref) or ref.get("chunk") is not None:
        return False
    return rt.state.status(ref["run"]) in ACTIVE


def _key_of(limit: Limit, args: tuple, kwargs: dict) -> Any:
    """The key value of this delivery; a key function that fails fails the step, saying so."""
    if limit.key is None:
        return None
    try:
        return limit.key(*args, **kwargs)
    except Exception as exc:
        raise DefinitionError(
            f"limit {limit.name!r}: its key function failed on the step's arguments "
            f"({type(exc).__name__}: {exc}); make key= accept them as the step does"
        ) from exc


def _max_wait(settings: Any) -> float:
    """How long a deferred step may sleep before it looks again; below half the Redis transport's
    visibility timeout, so that a waiting message is never taken for a lost one and delivered twice."""
    return max(0.05, min(settings.limit_max_wait, settings.visibility_timeout / 2))


def _defer(
    rt: Any,
    task: Task,
    ref: dict[str, Any],
    args: tuple,
    kwargs: dict,
    countdown: float,
    paid: set[str],
    ticket: dict[str, Any],
) -> None:
    """Publish this delivery's message again with ``countdown`` and end this delivery."""
    deferrals = int(ticket.get("deferrals") or 0)
    if deferrals == 0:
        _journal_first_deferral(rt, ref)
    req = task.request
    sig = task.signature_from_request(req, list(args), dict(kwargs), countdown=max(countdown, 0.0))
    headers = dict(sig.options.get("headers") or {})
    headers["canvasflow"] = ref
    headers[LIMITS_HEADER] = {"paid": sorted(paid), "deferrals": deferrals + 1}
    sig.apply_async(headers=headers, add_to_parent=False)
    log.debug("step deferred by its limits", countdown=round(countdown, 3), deferrals=deferrals + 1)
    raise Ignore()


def _journal_first_deferral(rt: Any, ref: dict[str, Any]) -> None:
    """The step shows ``limited`` until it runs (written before the message is published again,
    so it never lands after the step's own completion)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        rt.store.record_step(ref["run"], ref["step"], "step.limited", status="limited")
    except SQLAlchemyError as exc:  # only the display suffers; the step waits all the same
        log.warning("could not journal a limited step", error=str(exc)[:200])
