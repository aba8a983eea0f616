"""Steps on capabilities nobody declares, and the workflows of the reach tests (imported by
their workers too): a run whose messages would sit on a queue nobody serves is refused."""

from __future__ import annotations

import socket

from celery import chain

from canvasflow import Workflow, context, map_reduce, step
from canvasflow.workers.demo import add

LONELY = "reachnone"  # no engine, not declared, no worker: every run using it is refused
SERVED = "reachlive"  # not declared either, but a test starts a worker consuming cap.reachlive


@step(name="reach.lonely", capability=LONELY)
def lonely(x: int) -> int:
    return x


@step(name="reach.where", capability=SERVED)
def where(x: int) -> dict[str, object]:
    """Where the step really ran: the worker's hostname and the queue that delivered it."""
    return {"x": x, "worker": context().worker or socket.gethostname(), "queue": context().queue}


@step(name="reach.items", capability="demo")
def items(n: int) -> list[int]:
    return list(range(n))


@step(name="reach.total", capability="demo")
def total(values: list[int]) -> int:
    return sum(values)


Workflow("reach.direct", version="1", build=lambda: chain(add.s(1, 2), lonely.s()))
Workflow(
    "reach.mapped",
    version="1",
    build=lambda: map_reduce(lonely.s(), total.s(), items_from=items.s(3), chunk_size=2),
)
child = Workflow("reach.child", version="1", build=lambda x: lonely.s(x))
Workflow("reach.parent", version="1", build=lambda: chain(add.s(2, 3), child.s(x=4)))
Workflow("reach.served", version="1", build=lambda: chain(add.s(1, 1), where.s()))
