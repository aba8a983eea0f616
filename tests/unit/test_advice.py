"""A workflow whose build writes a one-signature group is warned about when it is defined
(Celery unrolls such a group while the chain is built, so the compiler never sees it)."""

from __future__ import annotations

import warnings

import pytest
from celery import chain, group

from canvasflow.config.errors import DefinitionWarning
from canvasflow.workers.demo import add, echo, mul
from canvasflow.workflows import Workflow


def _one_group(x: int):
    return chain(add.s(x, 2), group(mul.s(10)), echo.s())


def test_a_one_signature_group_in_a_build_function_is_warned_about_with_what_to_write():
    with pytest.warns(DefinitionWarning) as caught:
        Workflow("advice.fn", "1", build=_one_group, register=False)
    (warning,) = caught
    assert str(warning.message) == (
        "workflow advice.fn: group(mul.s(10)) has one signature, so Celery runs it as that signature "
        "alone: the next step gets its result, not a list of one. Write chord([mul.s(10)], next_step) "
        "to hand a list of one on, or mul.s(10) without the group"
    )
    assert warning.filename == __file__  # it points at the definition


def test_a_lambda_in_a_longer_statement_and_a_list_of_one_are_found():
    with pytest.warns(DefinitionWarning, match=r"group\(\[echo.s\(\)\]\) has one signature"):
        Workflow(
            "advice.lambda",
            "1",
            build=lambda x: chain(add.s(x, 1), group([echo.s()]), echo.s()),
            register=False,
        )


def _two(x: int):
    return chain(add.s(x, 2), group(mul.s(10), mul.s(2)), echo.s())


def _made_at_run_time(xs: list[int]):
    return group(add.s(x, 1) for x in xs)


def test_groups_that_mean_what_they_say_are_left_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DefinitionWarning)
        Workflow("advice.two", "1", build=_two, register=False)
        Workflow("advice.gen", "1", build=_made_at_run_time, register=False)
        Workflow("advice.builtin", "1", build=print, register=False)  # no source to read
