"""Rate and concurrency limits across every worker of a fleet, held in Redis (docs/limits.md).

``Limit`` is declared on a step (``@step(limits=Limit(rate="5/s"))``) or per capability
(``CANVASFLOW_CAPABILITY_LIMITS``); ``canvasflow.workers.admission`` applies them before a
step's claim, :mod:`.store` keeps them in Redis (``acquire.lua``, ``renew.lua``). A face: the
names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.workers.limits.spec import Limit, parse_rate
    from canvasflow.workers.limits.store import Grant, LimitStore, limit_base

_EXPORTS = {
    "Grant": "canvasflow.workers.limits.store",
    "Limit": "canvasflow.workers.limits.spec",
    "LimitStore": "canvasflow.workers.limits.store",
    "limit_base": "canvasflow.workers.limits.store",
    "parse_rate": "canvasflow.workers.limits.spec",
}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = ["Grant", "Limit", "LimitStore", "limit_base", "parse_rate"]
