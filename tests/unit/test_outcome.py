"""The status a rollback ends in says what happened."""

from __future__ import annotations

import pytest

from canvasflow.workflows.runtime.outcome import rollback_status


@pytest.mark.parametrize(
    ("comps", "failed", "origin", "expected"),
    [
        ({"a": "compensated"}, [], "failure", "compensated"),
        ({"a": "compensated", "b": "compensation_failed"}, ["b"], "failure", "compensation_failed"),
        ({}, [], "failure", "failed"),  # nothing completed: nothing was undone
        ({"a": "not_needed"}, [], None, "failed"),  # a fallback step: nothing to undo either
        ({}, [], "cancel", "cancelled"),
        ({"a": "compensated"}, [], "cancel", "compensated"),
        ({}, [], "undo", "compensated"),
    ],
)
def test_rollback_status(comps, failed, origin, expected):
    assert rollback_status(comps, failed, origin) == expected
