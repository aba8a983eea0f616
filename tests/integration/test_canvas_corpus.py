"""For every shape in the corpus, canvasflow's result equals plain Celery's (or the documented
one where Celery 5.7 slips), and every step of the run is journaled as succeeded. The
in-process runner (canvasflow.testing.run_inline) gives the same result and step set."""

from __future__ import annotations

import pytest

from canvasflow.workflows import Workflow, start
from canvasflow.workflows.runs.inline import run_inline
from canvasflow.workflows.runtime.graph import StepGraph
from tests.integration.corpus import SHAPES

pytestmark = [pytest.mark.redis, pytest.mark.worker]


def test_the_corpus_is_large_enough():
    assert len(SHAPES) >= 20


@pytest.mark.usefixtures("broker")  # every shape on Redis and on RabbitMQ
@pytest.mark.parametrize(("shape_id", "factory", "documented"), SHAPES, ids=[s[0] for s in SHAPES])
def test_shape_result_matches_plain_celery(worker, shape_id, factory, documented):
    plain = factory().apply_async().get(timeout=30, propagate=True)
    expected = documented if documented is not None else plain

    wf = Workflow(f"corpus.{shape_id}", "1", build=factory)
    record = start(wf.name).wait(timeout=30)

    assert record.status == "succeeded", record.error
    assert record.result == expected
    if documented is not None:
        assert plain != documented, "Celery now follows its documentation: drop the exception"
    graph = StepGraph.from_json(record.graph)
    journaled = {s.step_id: s for s in record.steps}
    assert set(graph.steps) <= set(journaled)
    for sid in graph.steps:
        step = journaled[sid]
        assert step.status == "succeeded", (sid, step.status, step.error)
        assert step.attempts >= 1 and step.finished_at is not None
    inline = run_inline(wf)
    assert (inline.status, inline.result) == ("succeeded", record.result)
    assert {s.step_id: s.status for s in inline.steps} == {s.step_id: s.status for s in record.steps}
