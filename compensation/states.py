"""Where a run's compensation states live in the state Redis: one hash per run, unit -> state.

The lowest module of the package: the rollback writes these states, and whoever shows a run
(``canvasflow status``, the console) reads them here without loading the rollback.
"""

from __future__ import annotations

from canvasflow.workflows.runtime.connections import Connections
from canvasflow.workflows.runtime.state import as_text


def comp_key(rt: Connections, run_id: str) -> str:
    return rt.state.key(run_id, "comp")


def comp_states(rt: Connections, run_id: str) -> dict[str, str]:
    raw = rt.redis.hgetall(comp_key(rt, run_id))
    return {as_text(k): as_text(v) for k, v in raw.items()}
