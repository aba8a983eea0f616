"""Canvas shapes run both by plain Celery and by canvasflow; their results must agree.

Each entry: (id, factory, documented) where ``documented`` is the result Celery's
documentation promises when Celery 5.7 itself gives something else (else None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import chain, chord, group

from canvasflow.workers.demo import add, echo, mul, xsum
from canvasflow.workflows.authoring.patterns import map_reduce, pipeline, scatter_gather

Shape = tuple[str, Callable[[], Any], Any]

SHAPES: list[Shape] = [
    ("single", lambda: add.s(2, 3), None),
    ("chain", lambda: chain(add.s(1, 2), mul.s(10), add.s(5)), None),
    ("chain_immutable", lambda: chain(add.s(1, 2), add.si(7, 7), echo.s("x")), None),
    ("chain_in_chain", lambda: chain(add.s(1, 1), chain(mul.s(3), add.s(1)), echo.s()), None),
    ("group", lambda: group(add.s(1, 1), add.s(2, 2), mul.s(3, 3)), None),
    ("group_nested_group", lambda: group(add.s(1, 1), group(add.s(2, 2), add.s(3, 3)), add.s(4, 4)), None),
    ("group_of_chains", lambda: group(chain(add.s(1, 1), mul.s(2)), chain(add.s(2, 2), echo.s())), None),
    ("chord", lambda: chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], echo.s()), None),
    ("chord_chain_body", lambda: chord([add.s(1, 1), add.s(2, 2)], chain(xsum.s(), mul.s(10))), None),
    ("chord_group_body", lambda: chord([add.s(1, 1), add.s(2, 2)], group(echo.s(), xsum.s())), None),
    ("chord_chain_in_header", lambda: chord([chain(add.s(1, 1), mul.s(5)), add.s(2, 2)], echo.s()), None),
    (
        "chord_in_chord_header",
        lambda: chord([chord([add.s(1, 1), add.s(2, 2)], xsum.s()), add.s(10, 10)], echo.s()),
        None,
    ),
    # Celery 5.7 gives the body [4, 2, 6]: the nested group's results reversed.
    (
        "chord_nested_group_header",
        lambda: chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)], echo.s()),
        [[2, 4, 6]],
    ),
    ("chain_to_group", lambda: chain(add.s(1, 1), group(add.s(1), add.s(2), echo.s())), None),
    ("chain_group_task", lambda: chain(add.s(1, 1), group(add.s(1), mul.s(3)), echo.s()), None),
    ("chain_to_chord", lambda: chain(add.s(1, 1), chord([add.s(1), mul.s(3)], echo.s()), xsum.s()), None),
    (
        "chain_of_groups",
        lambda: chain(group(add.s(1, 1), add.s(2, 2)), group(echo.s(), xsum.s()), echo.s()),
        None,
    ),
    (
        "chord_in_group_in_chain",
        lambda: chain(add.s(1, 1), group(chord([add.s(1), add.s(2)], xsum.s()), mul.s(3)), echo.s()),
        None,
    ),
    (
        "group_of_chords",
        lambda: group(
            chord([add.s(1, 1), add.s(2, 2)], xsum.s()), chord([mul.s(2, 2), mul.s(3, 3)], echo.s())
        ),
        None,
    ),
    ("one_member_group_in_chain", lambda: chain(add.s(1, 1), group(mul.s(5)), echo.s()), None),
    (
        "group_with_chain_ending_in_group",
        lambda: group(chain(add.s(1, 1), group(add.s(1), add.s(2))), add.s(5, 5)),
        None,
    ),
    (
        "chain_ending_in_chord_then_group",
        lambda: chain(chord([add.s(1, 1), add.s(2, 2)], xsum.s()), group(add.s(1), add.s(2))),
        None,
    ),
    ("pipeline_pattern", lambda: pipeline(add.s(1, 1), mul.s(4), echo.s()), None),
    (
        "scatter_gather_pattern",
        lambda: scatter_gather([add.s(1, 1), mul.s(2, 3), add.s(0, 0)], echo.s()),
        None,
    ),
    (
        "map_reduce_pattern",
        lambda: map_reduce(mul.s(3), xsum.s(), items_from=echo.s(*range(10)), chunk_size=3),
        None,
    ),
    ("map_reduce_empty", lambda: map_reduce(mul.s(3), echo.s(), items_from=echo.s(), chunk_size=3), None),
]
