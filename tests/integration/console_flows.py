"""Workflows for the console tests: a step that fails while a Redis flag is set, with an undo.

Workers and the console import this module (CANVASFLOW_WORKFLOW_MODULES), so both know the
steps and the workflows (a resume checks the run's workflow version)."""

from __future__ import annotations

from typing import Any

import redis
from celery import chain
from celery.canvas import Signature

from canvasflow.compensation import compensates
from canvasflow.config.settings import get_settings
from canvasflow.workers.step import step
from canvasflow.workflows import Workflow

MODULE = __name__


def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_state_url, decode_responses=True)


@step(name="ui.book", capability="demo")
def book(*parents: Any, label: str, flag: str = "") -> str:
    """Fails while the Redis key ``flag`` exists."""
    if flag and _redis().exists(flag):
        raise RuntimeError(f"{label} failed: flag {flag} is set")
    return label


@compensates(book, name="ui.unbook", retries=0)
def unbook(result: Any, *parents: Any, label: str, flag: str = "") -> None:
    _redis().rpush(f"{flag}:undone", label)


def _saga(flag: str) -> Signature:
    """reserve, then charge (fails while ``flag`` is set): ends compensated, reserve undone."""
    return chain(book.s(label="reserve"), book.s(label="charge", flag=flag))


def _retry(flag: str) -> Signature:
    """charge first (fails while ``flag`` is set, nothing to undo: ends failed), then ship."""
    return chain(book.s(label="charge", flag=flag), book.s(label="ship"))


saga = Workflow("tests.ui_saga", "1", build=_saga)
retry = Workflow("tests.ui_retry", "1", build=_retry)
