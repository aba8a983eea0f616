"""The console's JSON API: the same data as the CLI's ``--json`` (``workflows/views/reports.py``).

GET  /api/runs                  ``canvasflow runs --json`` (filters as the runs page; header
                                ``X-Next-Before``: the cursor of the next page)
POST /api/runs                  start a run (``workflows/console/launch.py``): 201 new, 200 the
                                run its key already names
GET  /api/runs/{id}             ``canvasflow status RUN --json`` (with ``tree``)
GET  /api/runs/{id}/events      the run's events in the order they happened
POST /api/runs/{id}/{action}    resume | cancel | signal | compensate; a JSON body
                                (``{"compensate": true}``, ``{"name": ..., "payload": ...}``);
                                answers the run as ``status --json`` does
GET  /api/openapi.json          the OpenAPI document of these routes (``openapi.py``)
Errors: ``{"error", "type"}`` with 400, 403, 404, 409, 413, 415 or 503.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from canvasflow.workflows.console.actions import http_error, perform
from canvasflow.workflows.console.auth import cross_origin
from canvasflow.workflows.console.launch import body_limit, launch, parse, too_large
from canvasflow.workflows.console.openapi import document
from canvasflow.workflows.console.queries import RunFilters, run_view, runs_page


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, default=str)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(exc: BaseException) -> Response:
    status, message, kind = http_error(exc)
    return JSONResponse({"error": message, "type": kind}, status_code=status)


def _refused(request: Request, what: str) -> Response | None:
    """415 for a body that is not declared JSON (no cross-site form can send one), 403 for a
    request from another site; None when neither."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse(
            {
                "error": f"send {what} as a JSON object (Content-Type: application/json)",
                "type": "UnsupportedMediaType",
            },
            415,
        )
    why = cross_origin(request)
    if why:
        return JSONResponse({"error": f"refused: {why}", "type": "Forbidden"}, 403)
    return None


class Api:
    def __init__(self, flower_url: str | None, page_size: int) -> None:
        self.flower_url, self.page_size = flower_url, page_size

    async def runs(self, request: Request) -> Response:
        try:
            filters = RunFilters.from_query(request.query_params)
            limit = int(request.query_params.get("limit") or self.page_size)
            page = await run_in_threadpool(runs_page, filters, max(1, min(limit, 1000)))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number", "type": "InputError"}, 400)
        except Exception as exc:
            return _error(exc)
        return _json(page.runs, headers={"X-Next-Before": page.next_before} if page.next_before else None)

    async def _view(self, request: Request, part: str) -> Response:
        try:
            view = await run_in_threadpool(run_view, request.path_params["run_id"], self.flower_url)
        except Exception as exc:
            return _error(exc)
        return _json(view.data if part == "run" else view.events)

    async def run(self, request: Request) -> Response:
        return await self._view(request, "run")

    async def events(self, request: Request) -> Response:
        return await self._view(request, "events")

    async def openapi(self, request: Request) -> Response:
        return _json(document())

    async def start(self, request: Request) -> Response:
        refused = _refused(request, "the start's fields")
        if refused is not None:
            return refused
        limit = body_limit()
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                return _error(too_large(limit))
        try:
            wanted = parse(raw)
            run_id, created = await run_in_threadpool(launch, wanted)
            view = await run_in_threadpool(run_view, run_id, self.flower_url)
        except Exception as exc:
            return _error(exc)
        if not created:
            return _json(view.data)
        return _json(view.data, 201, {"Location": f"/api/runs/{run_id}"})

    async def act(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["action"]
        refused = _refused(request, "the action's fields")
        if refused is not None:
            return refused
        raw = await request.body()
        try:
            fields = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON ({exc})", "type": "InputError"}, 400)
        if not isinstance(fields, dict):
            return JSONResponse({"error": "the body must be a JSON object", "type": "InputError"}, 400)
        try:
            await run_in_threadpool(perform, name, run_id, fields)
            view = await run_in_threadpool(run_view, run_id, self.flower_url)
        except Exception as exc:
            return _error(exc)
        return _json(view.data)
