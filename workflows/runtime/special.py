"""Steps that are not a single task message: map fan-out, signal waits, sub-workflows.

* ``map``: the items (a list known only at run time) are cut into chunks; each chunk is one
  ``canvasflow.chunk`` message applying the mapper to each item. The last chunk to finish
  (an atomic counter) completes the map step with all results, in item order.
* ``signal``: completes when ``signal(run, name, payload)`` arrives, with the payload; with
  a ``timeout`` (``wait_for_response``) it fails when none arrived in time (deadlines.py).
* ``sleep``: a durable timer (timers.py): no message; the timer service completes it with its
  input when it is due.
* ``workflow``: a ``canvasflow.subworkflow`` message whose body starts a child run; the
  child's result completes this step (``outcome.parent_step`` finds it when the child ends).

These decide and return: what completes is completed by the executor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from canvasflow.workflows.runtime import deadlines, publishing, timers
from canvasflow.workflows.runtime.context import Runtime
from canvasflow.workflows.runtime.graph import StepNode
from canvasflow.workflows.runtime.sending import send_step
from canvasflow.workflows.runtime.wire import CHUNK_TASK

# a fan-out's first messages go to the broker after this many chunks (then every
# publish_batch_size): with 1,000 chunks the other processes started 0.2 s late, serially
EARLY_FLUSHES = frozenset({8, 64})


class Completed(NamedTuple):
    """A special step that completes now, with ``value``: the executor completes it."""

    value: Any


def dispatch(
    rt: Runtime, run_id: str, gen: int, node: StepNode, args: list[Any], kwargs: dict[str, Any]
) -> Completed | None:
    """Start a map, signal or sleep step; :class:`Completed` when it is done at once (a map over
    no items, a signal that arrived before its step was reached, a sleep already due)."""
    if node.kind == "map":
        return _fan_out(rt, run_id, gen, node, args)
    if node.kind == "signal":
        return _await_signal(rt, run_id, gen, node)
    if node.kind == "sleep":
        return Completed(args[0] if args else None) if timers.begin(rt, run_id, gen, node) else None
    raise ValueError(f"unknown step kind {node.kind}")  # pragma: no cover - the compiler only makes these


# -- map ------------------------------------------------------------------------------
def _fan_out(rt: Runtime, run_id: str, gen: int, node: StepNode, args: list[Any]) -> Completed | None:
    items = args[0] if args else []
    if not isinstance(items, list):
        items = list(items)
    size = max(int(node.spec.get("chunk_size") or 1), 1)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if not chunks:
        return Completed([])
    done: set[int] = set()
    if not rt.state.set_chunks(run_id, node.id, len(chunks)):
        # fanned out before by a delivery that may have died half-way: publish again every
        # chunk not completed (a duplicate chunk message is absorbed by its claim)
        done = set(rt.state.chunk_results(run_id, node.id))
    mapper = node.spec["mapper"]
    rt.store.add_chunk_steps(run_id, node.id, len(chunks), node.options.get("queue"))
    with publishing.batch(rt.app, rt.settings.publish_batch_size, len(chunks) - len(done)):
        for i, chunk in enumerate(chunks):
            if i not in done:
                send_step(rt, run_id, gen, node, [mapper, chunk], {}, chunk=i, task=CHUNK_TASK)
            if i + 1 in EARLY_FLUSHES:  # the other workers start while the rest is prepared
                publishing.flush()
    return None


def chunk_completed(
    rt: Runtime,
    run_id: str,
    step_id: str,
    index: int,
    result: Any,
    encoded: str,
    info: dict[str, Any],
    stored: Callable[[], None] | None = None,
) -> Completed | None:
    """Record one chunk's result, once (``stored`` is called then); :class:`Completed` with
    every item's value, in item order, when it was the last chunk."""
    left = rt.state.chunk_done(run_id, step_id, index, encoded)
    if left < 0:
        return None
    if stored is not None:
        stored()
    rt.journal.succeeded(run_id, f"{step_id}#{index}", result, info)
    if left > 0:
        return None
    parts = rt.state.chunk_results(run_id, step_id)
    return Completed([v for i in sorted(parts) for v in parts[i]])


# -- signals --------------------------------------------------------------------------
def _await_signal(rt: Runtime, run_id: str, gen: int, node: StepNode) -> Completed | None:
    name = node.spec["name"]
    rt.redis.hset(rt.state.key(run_id, "st"), node.id, "waiting")
    if rt.state.transition(run_id, ("running",), "waiting"):
        rt.store.transition_run(run_id, ("running",), "waiting")
    deadlines.waiting_for_response(rt, run_id, gen, node.id, node.spec.get("timeout"))
    received, payload = rt.store.get_signal(run_id, name)
    if received and take_signal(rt, run_id, node.id):
        return Completed(payload)
    return None


def take_signal(rt: Runtime, run_id: str, step_id: str) -> bool:
    """A signal arrived for a waiting step: True when it takes the step, once (a second delivery
    of the same signal, or one after the step's response timeout failed it, does not)."""
    if not deadlines.take_waiting(rt, run_id, step_id):
        return False
    if rt.state.transition(run_id, ("waiting",), "running"):
        rt.store.transition_run(run_id, ("waiting",), "running")
    return True
