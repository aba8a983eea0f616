"""Middleware for the telemetry tests, loaded in workers by ``CANVASFLOW_MIDDLEWARE``: each hook
call is pushed, as JSON, onto a Redis list the test reads back (``recorded``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import redis

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workflows.telemetry.hooks import HOOKS, Middleware

PROBE = "canvasflow.test.probe"  # the carrier entry the dispatch hook writes


def _key() -> str:
    return f"{get_settings().key_prefix}:mw-probe"


def _redis() -> redis.Redis:
    return state_client(get_settings().redis_state_url, decode_responses=True)


def recorded(run_id: str) -> list[dict[str, Any]]:
    """The hook calls seen for ``run_id``, in the order they happened (across processes)."""
    rows = [json.loads(x) for x in _redis().lrange(_key(), 0, -1)]
    return [r for r in rows if r["event"].get("run_id") == run_id]


def _push(kind: str, hook: str, event: Any, *extra: Any) -> None:
    _redis().rpush(_key(), json.dumps({"by": kind, "hook": hook, "event": asdict(event), "extra": extra}))


def _recording(kind: str, raises: bool) -> dict[str, Any]:
    def make(hook: str) -> Any:
        def record(self: Middleware, event: Any, *extra: Any) -> None:
            if hook == "on_step_dispatch" and not raises:
                event.carrier[PROBE] = f"{event.run_id}/{event.step_id}"
            _push(kind, hook, event, *extra)
            if raises:
                raise RuntimeError(f"{hook} raised on purpose")

        return record

    return {hook: make(hook) for hook in HOOKS}


Recorder = type("Recorder", (Middleware,), _recording("recorder", raises=False))
Raiser = type("Raiser", (Middleware,), _recording("raiser", raises=True))
