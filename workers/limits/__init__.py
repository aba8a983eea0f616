"""Rate and concurrency limits across every worker of a fleet, held in Redis (docs/limits.md).

``Limit`` is declared on a step (``@step(limits=Limit(rate="5/s"))``) or per capability
(``CANVASFLOW_CAPABILITY_LIMITS``); :mod:`.admission` applies them before a step's claim,
:mod:`.store` keeps them in Redis (``acquire.lua``, ``renew.lua``).
"""

from canvasflow.workers.limits.spec import Limit, parse_rate
from canvasflow.workers.limits.store import Grant, LimitStore, limit_base

__all__ = ["Grant", "Limit", "LimitStore", "limit_base", "parse_rate"]
