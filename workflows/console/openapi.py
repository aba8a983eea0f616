"""The OpenAPI 3.1 document of the console's JSON API, served at ``/api/openapi.json``.

Written out rather than generated: the routes are few, and tests/unit/test_console_openapi.py
checks that every ``/api/`` route of ``create_app()`` is described here.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_RUN = {"$ref": "#/components/schemas/Run"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "bad input: the CLI's one-line message",
        401: "credentials required",
        403: "a cross-site request",
        404: "unknown run or workflow",
        409: "the run's state refuses the action",
        413: "payload too large",
        415: "the body is not JSON",
        503: "the journal, Redis or the broker does not answer",
    }
    return {str(c): _json(_ERROR, what[c]) for c in codes}


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
_QUERY = [
    {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
    for n, t, d in (
        ("workflow", "string", "runs of this workflow"),
        ("status", "string", "runs in this status"),
        ("since", "string", "created at or after: ISO time or a time ago (2h, 7d)"),
        ("until", "string", "created before: ISO time or a time ago"),
        ("before", "string", "the cursor of the next page (header X-Next-Before)"),
        ("limit", "integer", "at most this many (default CANVASFLOW_UI_PAGE_SIZE)"),
    )
]


def _action(name: str, summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{name}Run",
            "summary": summary,
            "parameters": [_RUN_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": _json(_RUN, "the run after the action"),
                **_errors(400, 401, 403, 404, 409, 415, 503),
            },
        }
    }


def document() -> dict[str, Any]:
    """The whole document (a new dict each call)."""
    empty = {"type": "object", "additionalProperties": False}
    return {
        "openapi": "3.1.0",
        "info": {"title": "canvasflow console API", "version": "1"},
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/api/runs": {
                "get": {
                    "operationId": "listRuns",
                    "summary": "runs, newest first (canvasflow runs --json)",
                    "parameters": _QUERY,
                    "responses": {
                        "200": _json({"type": "array", "items": _RUN}, "the runs, without their steps"),
                        **_errors(400, 401, 503),
                    },
                },
                "post": {
                    "operationId": "startRun",
                    "summary": "start a run (canvasflow start); idempotent by key",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Start"}}},
                    },
                    "responses": {
                        "201": _json(_RUN, "a new run (header Location: its URL)"),
                        "200": _json(_RUN, "the run this key already names: no second run"),
                        **_errors(400, 401, 403, 404, 413, 415, 503),
                    },
                },
            },
            "/api/runs/{run_id}": {
                "get": {
                    "operationId": "getRun",
                    "summary": "a run and its steps (canvasflow status RUN --json, with tree)",
                    "parameters": [_RUN_ID],
                    "responses": {"200": _json(_RUN, "the run"), **_errors(401, 404, 503)},
                }
            },
            "/api/runs/{run_id}/events": {
                "get": {
                    "operationId": "runEvents",
                    "summary": "the run's history in order (canvasflow history RUN --json)",
                    "parameters": [_RUN_ID],
                    "responses": {
                        "200": _json({"type": "array", "items": {"type": "object"}}, "the events"),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/api/runs/{run_id}/resume": _action("resume", "resume a failed or cancelled run", empty),
            "/api/runs/{run_id}/cancel": _action(
                "cancel",
                "cancel a run (compensate: roll it back too)",
                {"type": "object", "properties": {"compensate": {"type": "boolean"}}},
            ),
            "/api/runs/{run_id}/signal": _action(
                "signal",
                "send a signal to a waiting run",
                {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "payload": {}},
                },
            ),
            "/api/runs/{run_id}/compensate": _action("compensate", "retry failed compensations", empty),
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document"), **_errors(401)},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "CANVASFLOW_UI_TOKEN"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "CANVASFLOW_UI_USERNAME/PASSWORD",
                },
            },
            "schemas": {
                "Start": {
                    "type": "object",
                    "required": ["workflow"],
                    "additionalProperties": False,
                    "properties": {
                        "workflow": {"type": "string", "description": "a registered workflow's name"},
                        "inputs": {"type": "object", "description": "validated by the workflow's model"},
                        "version": {"type": "string", "description": "default: the newest"},
                        "key": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "business key: one run per key",
                        },
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "priority": {"type": "integer", "minimum": 0, "maximum": 9, "description": "9 first"},
                    },
                },
                "Run": {
                    "type": "object",
                    "required": ["id", "workflow", "version", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "workflow": {"type": "string"},
                        "version": {"type": "string"},
                        "status": {"type": "string"},
                        "key": {"type": ["string", "null"]},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "inputs": {"type": "object"},
                        "result": {},
                        "error": {"type": ["object", "null"]},
                        "steps": {"type": "array", "items": {"type": "object"}},
                        "tree": {"type": "object"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "type"],
                    "properties": {"error": {"type": "string"}, "type": {"type": "string"}},
                },
            },
        },
    }
