"""Steps that report the priority their message was delivered with (test_priorities.py)."""

from __future__ import annotations

from typing import Any

import redis
from celery import current_task

from canvasflow.compensation import compensates
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step


def _note(log: str, what: str) -> None:
    priority = (current_task.request.delivery_info or {}).get("priority")
    redis.Redis.from_url(get_settings().redis_state_url).rpush(log, f"{what}:{priority}")


@step(name="prio.act", capability="demo")
def act(*parents: Any, log: str) -> str:
    _note(log, "do")
    return "done"


@compensates(act, name="prio.undo_act")
def undo_act(result: Any, *parents: Any, log: str) -> None:
    _note(log, "undo")
