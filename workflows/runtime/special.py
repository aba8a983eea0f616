"""Steps that are not a single task message: map fan-out, signal waits, sub-workflows.

* ``map``: the items (a list known only at run time) are cut into chunks; each chunk is one
  ``canvasflow.chunk`` message applying the mapper to each item. The last chunk to finish
  (an atomic counter) completes the map step with all results, in item order.
* ``signal``: completes when ``signal(run, name, payload)`` arrives, with the payload; with
  a ``timeout`` (``wait_for_response``) it fails when none arrived in time (deadlines.py).
* ``workflow``: a ``canvasflow.subworkflow`` message whose body starts a child run; the
  child's result completes this step (see child_finished).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from canvasflow.workflows.runtime import deadlines, publishing
from canvasflow.workflows.runtime.context import CHUNK_TASK, Runtime
from canvasflow.workflows.runtime.executor import complete, encode_result, send_step
from canvasflow.workflows.runtime.graph import StepNode


def dispatch(
    rt: Runtime, run_id: str, gen: int, node: StepNode, args: list[Any], kwargs: dict[str, Any]
) -> None:
    if node.kind == "map":
        _fan_out(rt, run_id, gen, node, args)
    elif node.kind == "signal":
        _await_signal(rt, run_id, gen, node)
    else:  # pragma: no cover - the compiler only makes the kinds above
        raise ValueError(f"unknown step kind {node.kind}")


# -- map ------------------------------------------------------------------------------
def _fan_out(rt: Runtime, run_id: str, gen: int, node: StepNode, args: list[Any]) -> None:
    items = args[0] if args else []
    if not isinstance(items, list):
        items = list(items)
    size = max(int(node.spec.get("chunk_size") or 1), 1)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    if not chunks:
        complete(rt, run_id, node.id, gen, [], "[]", None)
        return
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


def chunk_completed(
    rt: Runtime,
    run_id: str,
    step_id: str,
    gen: int,
    index: int,
    result: Any,
    encoded: str,
    info: dict[str, Any],
    stored: Callable[[], None] | None = None,
) -> None:
    from canvasflow.workflows.runtime.executor import journal_success

    left = rt.state.chunk_done(run_id, step_id, index, encoded)
    if left < 0:
        return
    if stored is not None:
        stored()
    journal_success(rt, run_id, f"{step_id}#{index}", result, info)
    if left == 0:
        parts = rt.state.chunk_results(run_id, step_id)
        values = [v for i in sorted(parts) for v in parts[i]]
        complete(rt, run_id, step_id, gen, values, encode_result(step_id, values), None)


# -- signals --------------------------------------------------------------------------
def _await_signal(rt: Runtime, run_id: str, gen: int, node: StepNode) -> None:
    name = node.spec["name"]
    rt.redis.hset(rt.state.key(run_id, "st"), node.id, "waiting")
    if rt.state.transition(run_id, ("running",), "waiting"):
        rt.store.transition_run(run_id, ("running",), "waiting")
    deadlines.waiting_for_response(rt, run_id, gen, node.id, node.spec.get("timeout"))
    received, payload = rt.store.get_signal(run_id, name)
    if received:
        deliver_signal(rt, run_id, gen, node.id, payload)


def deliver_signal(rt: Runtime, run_id: str, gen: int, step_id: str, payload: Any) -> None:
    """Complete a waiting step with a signal's payload, once: a second delivery of the same
    signal, or one after the step's response timeout failed it, changes nothing."""
    if not deadlines.take_waiting(rt, run_id, step_id):
        return
    if rt.state.transition(run_id, ("waiting",), "running"):
        rt.store.transition_run(run_id, ("waiting",), "running")
    complete(rt, run_id, step_id, gen, payload, encode_result(step_id, payload), None)


# -- sub-workflows (the step itself is a ``canvasflow.subworkflow`` message) ----------------
def child_finished(rt: Runtime, run_id: str, value: Any) -> None:
    """A run finished; when it is a child, its result completes the parent's step."""
    record = rt.store.get_run(run_id, with_steps=False)
    if record is None or record.parent_run_id is None or record.parent_step is None:
        return
    parent = rt.store.get_run(record.parent_run_id, with_steps=False)
    if parent is None:
        return
    complete(
        rt,
        parent.id,
        record.parent_step,
        parent.generation,
        value,
        encode_result(record.parent_step, value),
        None,
    )
