"""Workflow definitions: inputs validated before anything is enqueued; clear errors."""

from __future__ import annotations

import pytest
from celery import chain
from pydantic import BaseModel

from canvasflow.config.errors import CanvasflowError, DefinitionError, InputError, WorkflowNotFound
from canvasflow.workers.demo import add
from canvasflow.workflows.authoring.definition import Workflow, WorkflowRegistry


def build(x: int, y: int = 2):
    return chain(add.s(x, y), add.s(1))


def test_inputs_model_comes_from_type_hints_and_defaults():
    wf = Workflow("t.def.hints", "1", build=build, register=False)
    assert wf.validate({"x": "5"}) == {"x": 5, "y": 2}
    with pytest.raises(InputError, match=r"x: Field required"):
        wf.validate({})
    with pytest.raises(InputError, match=r"y: Input should be a valid integer"):
        wf.validate({"x": 1, "y": "many"})
    with pytest.raises(InputError, match=r"z: Extra inputs are not permitted"):
        wf.validate({"x": 1, "z": 0})


def test_inputs_that_are_not_json_are_refused():
    wf = Workflow("t.def.json", "1", build=build, register=False)
    with pytest.raises(InputError, match="not JSON"):
        wf.validate("{x: 1")
    with pytest.raises(InputError, match="must be a JSON object"):
        wf.validate([1, 2])


def test_explicit_pydantic_model():
    class Order(BaseModel):
        order_id: int
        note: str = ""

    wf = Workflow(
        "t.def.model", "1", build=lambda order_id, note: add.s(order_id, 1), inputs=Order, register=False
    )
    assert wf.validate({"order_id": 3}) == {"order_id": 3, "note": ""}


def test_build_or_steps_exactly_one():
    with pytest.raises(DefinitionError, match="exactly one of build= or steps="):
        Workflow("t.def.none", "1", register=False)


def test_registry_finds_by_name_and_version_and_names_what_exists():
    reg = WorkflowRegistry()
    reg._loaded = True
    v1 = Workflow("t.def.reg", "1", build=build, register=False)
    v2 = Workflow("t.def.reg", "2", build=build, register=False)
    reg.add(v1)
    reg.add(v2)
    assert reg.get("t.def.reg") is v2
    assert reg.get("t.def.reg", "1") is v1
    with pytest.raises(WorkflowNotFound, match="no workflow named 'nope'"):
        reg.get("nope")
    with pytest.raises(WorkflowNotFound, match=r"has no version '3' \(registered: 1, 2\)"):
        reg.get("t.def.reg", "3")


def test_start_goes_through_the_launcher_of_the_registry_it_was_registered_in():
    reg = WorkflowRegistry()
    reg._loaded = True
    started = []
    reg.set_launcher(lambda name, inputs, version=None: started.append((name, inputs, version)) or "run")
    wf = Workflow("t.def.start", "3", build=build, register=False)
    reg.add(wf)
    assert wf.start(x=1) == "run"
    assert started == [("t.def.start", {"x": 1}, "3")]


def test_start_without_a_launcher_says_what_to_import():
    reg = WorkflowRegistry()
    wf = Workflow("t.def.nolauncher", "1", build=build, register=False)
    reg.add(wf)
    with pytest.raises(CanvasflowError, match="import canvasflow"):
        wf.start(x=1)


def test_the_client_launches_the_default_registry_s_workflows():
    from canvasflow.workflows import client
    from canvasflow.workflows.authoring.definition import registry

    assert registry._launcher is client.start
    assert Workflow("t.def.default", "1", build=build, register=False).registry is registry
