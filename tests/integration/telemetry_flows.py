"""Workflows of the telemetry worker tests (the test's workers import this module too)."""

from __future__ import annotations

from celery import chain, chord

from canvasflow.workers.demo import add, sleep, xsum
from canvasflow.workflows import Workflow
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
