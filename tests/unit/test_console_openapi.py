"""/api/openapi.json describes every /api/ route of the console app, with its methods."""

from __future__ import annotations

import re

from starlette.routing import Route

from canvasflow.config.settings import load_settings
from canvasflow.workflows.console.actions import ACTIONS
from canvasflow.workflows.console.app import create_app
from canvasflow.workflows.console.openapi import document


def _routes() -> set[tuple[str, str]]:
    """(method, path) of every /api/ route, ``{action}`` spelled out for each action."""
    found = set()
    for route in create_app(load_settings()).routes:
        assert isinstance(route, Route)
        if not route.path.startswith("/api/"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        paths = [path.replace("{action}", a) for a in ACTIONS] if "{action}" in path else [path]
        methods = (route.methods or {"GET"}) - {"HEAD"}
        found |= {(m.lower(), p) for p in paths for m in methods}
    return found


def test_every_api_route_is_in_the_document_and_nothing_else():
    doc = document()
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert _routes() == described
    assert ("post", "/api/runs") in described and ("get", "/api/openapi.json") in described


def test_every_operation_names_its_answers_and_refusals():
    doc = document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["summary"], (method, path)
            assert "401" in op["responses"], (method, path)
            for code, answer in op["responses"].items():
                schema = answer["content"]["application/json"]["schema"]
                if code.startswith("4") or code.startswith("5"):
                    assert schema == {"$ref": "#/components/schemas/Error"}
    start = doc["paths"]["/api/runs"]["post"]["responses"]
    assert {"200", "201", "400", "404", "413", "415"} <= set(start)
