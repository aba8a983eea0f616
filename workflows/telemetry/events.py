"""The event stream: every run, step, route and compensation event appended to one Redis stream.

The stream is ``<key prefix>:events`` on the state Redis, capped at about
``CANVASFLOW_EVENTS_MAXLEN`` entries (``XADD ... MAXLEN ~ N``: Redis trims whole nodes, so a
few more may stay). Each entry has three fields: ``hook`` (``run_start``, ``step_success``, ...),
``run_id``, and ``event``: the event as JSON (None fields left out; a progress event adds
``done``, ``total``, ``note``). Stream ids are Redis's arrival order, which for one run is the
order things happened: a step is dispatched before it starts, completes before its successors
are dispatched.

Enabled by ``CANVASFLOW_EVENTS=true`` (or listing ``canvasflow.workflows.telemetry.events:EventStream``
in ``CANVASFLOW_MIDDLEWARE``); read with :func:`read` and :func:`follow`, or
``canvasflow events [--follow] [--run RUN] [--json]``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import redis
import structlog
from celery.signals import task_postrun, task_prerun

from canvasflow.config.settings import get_settings
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.telemetry.hooks import (
    CompensationEvent,
    Middleware,
    RouteEvent,
    RunEvent,
    StepEvent,
)

PAGE = 1_000
BATCH = 64  # events a task holds at most before writing them
CARRIED = "canvasflow_dispatch_event"  # a client's dispatch event, in the step message's carrier
log = structlog.get_logger("canvasflow.telemetry")
_SKIP = {"carrier"}  # a dispatch's header carrier is for tracing, not for readers
_FIELDS = {
    cls: tuple(f.name for f in fields(cls) if f.name not in _SKIP)
    for cls in (RunEvent, StepEvent, RouteEvent, CompensationEvent)
}


# the held events appended in one command, handed over as one JSON array of [hook, run, event]
# triples: a pipeline of one XADD per event cost the worker more than the events themselves, and
# three arguments per event still had redis-py encode each one in Python (a fifth of the cost)
_APPEND = """
local maxlen = ARGV[1]
local held = cjson.decode(ARGV[2])
for i = 1, #held do
  local e = held[i]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'hook', e[1], 'run_id', e[2], 'event', e[3])
end
return #held
"""


def stream_key(prefix: str) -> str:
    return f"{prefix}:events"


_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode  # built once, not per event


def _payload(event: Any, extra: dict[str, Any] | None = None) -> str:
    data = {name: value for name in _FIELDS[type(event)] if (value := getattr(event, name)) is not None}
    if extra:
        data.update(extra)
    return _encode(data)


class EventStream(Middleware):
    """Appends each event to the stream; a Redis error is logged by the hook runner, never raised.

    What a hook costs is a few microseconds and, per task, one round trip to Redis (one script
    call appending every held event):

    * inside a task (a worker running a step or a compensation) events are held and written
      together, in order: just *before* the task publishes a step (so a step's dispatch is in the
      stream before its start), when the task ends, or once ``BATCH`` are held. A chain step's
      start, success and its successor's dispatch go out in one round trip; the steps fused into
      a delivery (docs/operations.md) write with it, when the outermost task ends;
    * outside a task (a client's ``start()``, the recovery sweep) a step's dispatch event is not
      written there: it travels in the step message's carrier and the worker that starts the step
      writes it just before the start (the first attempt's). A group of 1,000 started by a client
      costs the client no round trip for them; the event keeps its own time (``at``), but shows up
      in the stream when a worker picks the step up. Other events outside a task are written at once.

    A process killed mid-task loses the events it held.
    """

    def __init__(
        self, client: redis.Redis | None = None, prefix: str | None = None, maxlen: int | None = None
    ) -> None:
        s = get_settings()
        self._client = client
        self.key = stream_key(prefix or s.key_prefix)
        self.maxlen = maxlen or s.events_maxlen
        self._local = threading.local()  # held events and "in a task", per thread (-P threads)
        task_prerun.connect(self._task_began, weak=False)
        task_postrun.connect(self._task_ended, weak=False)

    @property
    def client(self) -> redis.Redis:
        if self._client is not None:
            return self._client
        return runtime().redis  # this process's state Redis (a forked child builds its own)

    @property
    def _held(self) -> list[tuple[str, str, str]]:
        held = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = []
        return held

    def _task_began(self, **_: Any) -> None:
        # a fused step is a task traced inside its delivery's task: count the depth, and write
        # when the outermost one ends (one round trip for the delivery, not one per step)
        self._local.depth = getattr(self._local, "depth", 0) + 1
        self._local.in_task = True

    def _task_ended(self, **_: Any) -> None:
        self._local.depth = max(getattr(self._local, "depth", 1) - 1, 0)
        if self._local.depth:
            return
        self._local.in_task = False
        try:
            self.flush()
        except Exception:
            log.exception("event stream: could not write the task's events")

    def flush(self) -> None:
        """Write the held events, in order, in one round trip."""
        held = self._held
        if not held:
            return
        self._local.held = []
        self.client.register_script(_APPEND)(keys=[self.key], args=[self.maxlen, json.dumps(held)])

    def _hold(self, hook: str, run_id: str, payload: str, *, now: bool = False) -> None:
        held = self._held
        held.append((hook, run_id, payload))
        if now or not getattr(self._local, "in_task", False) or len(held) >= BATCH:
            self.flush()

    def _add(self, hook: str, event: Any, extra: dict[str, Any] | None = None, *, now: bool = False) -> None:
        self._hold(hook, event.run_id, _payload(event, extra), now=now)

    def on_run_start(self, event: RunEvent) -> None:
        self._add("run_start", event)

    def on_run_finish(self, event: RunEvent) -> None:
        self._add("run_finish", event, now=True)

    def on_step_dispatch(self, event: StepEvent) -> None:
        if getattr(self._local, "in_task", False):  # before a message: dispatch precedes start
            self._add("step_dispatch", event, now=not event.fused)  # fused: no message, order kept
        else:
            event.carrier[CARRIED] = _payload(event)  # the worker writes it before the start

    def on_route(self, event: RouteEvent) -> None:
        self._add("route", event)

    def on_step_start(self, event: StepEvent) -> None:
        carried = event.carrier.get(CARRIED)
        if carried and event.attempt == 1:  # dispatched outside a task (see the class docstring)
            self._hold("step_dispatch", event.run_id, carried)
        self._add("step_start", event)

    def on_step_success(self, event: StepEvent) -> None:
        self._add("step_success", event)

    def on_step_failure(self, event: StepEvent) -> None:
        self._add("step_failure", event)

    def on_step_retry(self, event: StepEvent) -> None:
        self._add("step_retry", event)

    def on_step_progress(self, event: StepEvent, done: float, total: float | None, note: str | None) -> None:
        self._add("step_progress", event, {"done": done, "total": total, "note": note})

    def on_compensation_start(self, event: CompensationEvent) -> None:
        self._add("compensation_start", event)

    def on_compensation_success(self, event: CompensationEvent) -> None:
        self._add("compensation_success", event)

    def on_compensation_failure(self, event: CompensationEvent) -> None:
        self._add("compensation_failure", event)


# -- reading -------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: Any, raw: dict[Any, Any]) -> dict[str, Any]:
    got = {_text(k): _text(v) for k, v in raw.items()}
    return {"id": _text(entry_id), "hook": got.get("hook", ""), **json.loads(got.get("event") or "{}")}


def read(
    client: redis.Redis, prefix: str, *, run: str | None = None, last: int | None = 50
) -> list[dict[str, Any]]:
    """Events in the order they were appended: of one run (all the stream holds), or the ``last`` few."""
    key = stream_key(prefix)
    if run is None and last:
        newest: Any = client.xrevrange(key, count=last)
        return [_entry(i, raw) for i, raw in reversed(newest)]
    out: list[dict[str, Any]] = []
    start = "-"
    while True:
        page: Any = client.xrange(key, min=start, count=PAGE)
        events = [_entry(i, raw) for i, raw in page]
        out += [e for e in events if run is None or e["run_id"] == run]
        if len(page) < PAGE:
            return out[-last:] if last else out
        start = "(" + _text(page[-1][0])


def follow(
    client: redis.Redis, prefix: str, *, run: str | None = None, after: str = "$", block_ms: int = 1_000
) -> Iterator[dict[str, Any]]:
    """Events appended after ``after`` (a stream id; ``$``: from now), as they come, forever."""
    key = stream_key(prefix)
    cursor = after
    if after == "$":  # pin "now" to an id: a bare "$" on every read would miss what came in between
        last_one: Any = client.xrevrange(key, count=1)
        cursor = _text(last_one[0][0]) if last_one else "0-0"
    while True:
        got: Any = client.xread({key: cursor}, count=PAGE, block=block_ms)
        for _stream, entries in got or []:
            for entry_id, raw in entries:
                cursor = _text(entry_id)
                event = _entry(entry_id, raw)
                if run is None or event["run_id"] == run:
                    yield event
