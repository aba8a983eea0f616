"""Property: for random canvases (chains, groups and chords nested, task signatures with
positional and keyword arguments, immutable ones, options, errbacks),
a graph handed out by the shape cache for a second canvas of the same shape, with other
values, equals a compilation of that canvas, types of the values and all."""

from __future__ import annotations

from typing import Any

from celery import chain, chord, current_app, group
from hypothesis import given, settings
from hypothesis import strategies as st

from canvasflow.workers.demo import add, echo, noop
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.shapes import ShapeCache

TASKS = (add, echo, noop)

# a leaf: (task, number of positional arguments, keywords, immutable, queue, with an errback)
leaves = st.tuples(
    st.integers(0, len(TASKS) - 1),
    st.integers(0, 3),
    st.lists(st.sampled_from(["a", "b", "amount"]), max_size=2, unique=True),
    st.booleans(),
    st.sampled_from([None, "cap.demo", "cap.other"]),
    st.booleans(),
)
specs = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("chain"), st.lists(inner, min_size=1, max_size=3)),
        st.tuples(st.just("group"), st.lists(inner, min_size=1, max_size=3)),
        st.tuples(st.just("chord"), st.lists(inner, min_size=1, max_size=3), inner),
    ),
    max_leaves=8,
)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4) | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=3), inner)
    ),
    max_leaves=4,
)


def build(spec: Any, draw: Any) -> Any:
    """The canvas of ``spec``, each argument a value drawn now."""
    if spec[0] == "chain":
        return chain(*(build(s, draw) for s in spec[1]))
    if spec[0] == "group":
        return group([build(s, draw) for s in spec[1]])
    if spec[0] == "chord":
        return chord([build(s, draw) for s in spec[1]], build(spec[2], draw))
    task, arity, keywords, immutable, queue, errback = spec
    args = [draw(values) for _ in range(arity)]
    kwargs = {k: draw(values) for k in keywords}
    sig = (TASKS[task].si if immutable else TASKS[task].s)(*args, **kwargs)
    if queue:
        sig = sig.set(queue=queue)
    if errback:
        sig.link_error(echo.si("failed"))
    return sig


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data(), spec=specs)
def test_a_graph_from_the_shape_cache_equals_a_compilation_of_its_own_canvas(data: Any, spec: Any) -> None:
    cache, app = ShapeCache(), current_app

    def compile(canvas: Any) -> Any:
        return compile_canvas(canvas, app)

    # three canvases of the spec, no value of one equal to the other's: a drawn value, then
    # that value in a tuple, then in a dict (a copy with the first canvas's values would fail)
    wrap = (lambda v: v, lambda v: (v, 1), lambda v: {"k": v})
    canvases = [build(spec, lambda strategy, w=w: w(data.draw(strategy))) for w in wrap]
    for canvas in canvases:
        assert cache.compiled("ctx", canvas, compile, app.tasks) == compile_canvas(canvas, app)
    assert (cache.misses, cache.hits) == (1, 2)  # one compilation, proven to only place the values
