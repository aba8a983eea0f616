"""Workflows of the telemetry worker tests (the test's workers import this module too)."""

from __future__ import annotations

import time

from celery import chain, chord

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import get_settings
from canvasflow.workers.demo import add, sleep, xsum
from canvasflow.workers.step import step
from canvasflow.workflows import Workflow
from canvasflow.workflows.runtime.execution import context
from tests.integration.saga import act

MODULE = __name__
# the sleep step takes 60 ms: above the 50 ms bucket of the step duration histogram
tel_chain = Workflow("tel.chain", "1", build=lambda: chain(sleep.s(0.06), add.s(1), add.s(2)))
tel_chord = Workflow("tel.chord", "1", build=lambda: chord([add.s(1, 1), add.s(2, 2)], xsum.s()))
tel_saga = Workflow(
    "tel.saga",
    "1",
    build=lambda log: chain(act.s(label="a", log=log), act.s(label="b", log=log, fail=True)),
)


@step(name="tel.halfway", capability="demo")
def halfway(gate: str) -> str:
    """Report 3 of 4 pages, then wait (at most a minute) until the test opens ``gate``."""
    context().progress(3, 4, note="pages")
    r = state_client(get_settings().redis_state_url)
    deadline = time.monotonic() + 60
    while not r.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "done"


tel_progress = Workflow("tel.progress", "1", build=lambda gate: halfway.s(gate))
