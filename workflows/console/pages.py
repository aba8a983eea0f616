"""The console's HTML pages: runs list, run page (and its live part), confirmations, errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from canvasflow.config.errors import InputError
from canvasflow.workflows.console import svg
from canvasflow.workflows.console.actions import ACTIONS, http_error, payload_from_text, perform
from canvasflow.workflows.console.auth import ActionGuard, cross_origin
from canvasflow.workflows.console.queries import RunFilters, RunView, run_view, runs_page
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.store.records import RUN_STATUSES
from canvasflow.workflows.views.pictures import STATUS_COLORS
from canvasflow.workflows.views.runtree import error_text

DONE = {
    "resume": "Resumed: the run goes on where it stopped.",
    "cancel": "Cancelled.",
    "signal": "Signal sent.",
    "compensate": "Compensation retried.",
}


def _when(value: Any) -> str:
    if not value:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=select_autoescape(["html"]),
    )
    env.filters.update(when=_when, ms=_ms, errtext=lambda e: error_text(e, 400))
    return env


class Pages:
    """Page handlers sharing the templates, the settings and the action guard."""

    def __init__(self, env: Environment, guard: ActionGuard, flower_url: str | None, page_size: int) -> None:
        self.env, self.guard, self.flower_url, self.page_size = env, guard, flower_url, page_size

    def render(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        page = self.env.get_template(name).render(colors=STATUS_COLORS, flower_url=self.flower_url, **context)
        return HTMLResponse(page, status_code=code)

    def error(self, exc: BaseException) -> HTMLResponse:
        status, message, kind = http_error(exc)
        return self.render("error.html", status, status=status, message=message, kind=kind)

    async def runs(self, request: Request) -> Response:
        try:
            filters = RunFilters.from_query(request.query_params)
            page = await run_in_threadpool(runs_page, filters, self.page_size)
            workflows = await run_in_threadpool(_workflow_names)
        except Exception as exc:
            return self.error(exc)
        return self.render(
            "runs.html",
            filters=filters,
            page=page,
            statuses=RUN_STATUSES,
            workflows=workflows,
            page_size=self.page_size,
        )

    def _live_context(self, view: RunView) -> dict[str, Any]:
        svg_text = svg.render(view.graph, view.shown, view.notes) if view.graph else ""
        actions = [a for a in ACTIONS.values() if view.data["status"] in a.offered]
        return {"view": view, "svg": svg_text, "actions": actions}

    async def run(self, request: Request) -> Response:
        try:
            view = await run_in_threadpool(run_view, request.path_params["run_id"], self.flower_url)
        except Exception as exc:
            return self.error(exc)
        done = DONE.get(request.query_params.get("done", ""))
        return self.render("run.html", done=done, **self._live_context(view))

    async def live(self, request: Request) -> Response:
        try:
            view = await run_in_threadpool(run_view, request.path_params["run_id"], self.flower_url)
        except Exception as exc:
            return self.error(exc)
        return HTMLResponse(
            self.env.get_template("live.html").render(colors=STATUS_COLORS, **self._live_context(view))
        )

    async def graph_svg(self, request: Request) -> Response:
        try:
            view = await run_in_threadpool(run_view, request.path_params["run_id"], self.flower_url)
        except Exception as exc:
            return self.error(exc)
        body = svg.render(view.graph, view.shown, view.notes) if view.graph else "<svg/>"
        return Response(body, media_type="image/svg+xml")

    async def confirm(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["action"]
        try:
            action = _action(name)
            view = await run_in_threadpool(run_view, run_id, self.flower_url)
        except Exception as exc:
            return self.error(exc)
        return self.render(
            "confirm.html", action=action, run=view.data, token=self.guard.token(run_id, name), form={}
        )

    async def act(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["action"]
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        try:
            action = _action(name)
            why = cross_origin(request)
            if why or not self.guard.valid(run_id, name, form.get("token", "")):
                return self.render(
                    "error.html",
                    403,
                    status=403,
                    kind="Forbidden",
                    message=f"refused: {why or 'the confirmation token is missing or wrong'}; "
                    "confirm the action from the run page",
                )
            fields: dict[str, Any] = {"compensate": form.get("compensate"), "name": form.get("name")}
            if action.name == "signal":
                fields["payload"] = payload_from_text(form.get("payload"))
            await run_in_threadpool(perform, action.name, run_id, fields)
        except Exception as exc:
            return self.error(exc)
        return RedirectResponse(f"/runs/{run_id}?done={name}", status_code=303)


def _action(name: str) -> Any:
    if name not in ACTIONS:
        raise InputError(f"unknown action {name!r}: one of {', '.join(ACTIONS)}")
    return ACTIONS[name]


def _workflow_names() -> list[str]:
    return sorted({d["name"] for d in runtime().store.definitions()})
