"""The console as an ASGI app (Starlette): pages, the JSON API, auth around both.

``create_app()`` builds it from the settings; ``canvasflow ui`` serves it with uvicorn.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.console.api import Api
from canvasflow.workflows.console.auth import ActionGuard, AuthMiddleware
from canvasflow.workflows.console.credentials import Credentials
from canvasflow.workflows.console.pages import Pages, templates

ACTION = "{action:str}"


async def _home(request: Request) -> Response:
    return RedirectResponse("/runs", status_code=302)


async def _health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(settings: Settings | None = None) -> Starlette:
    """The console app; credentials from ``settings`` (``CANVASFLOW_UI_*``) guard every page."""
    settings = settings or get_settings()
    credentials = Credentials.from_settings(settings)
    pages = Pages(templates(), ActionGuard(), settings.flower_url, settings.ui_page_size)
    api = Api(settings.flower_url, settings.ui_page_size)
    routes = [
        Route("/", _home),
        Route("/healthz", _health),
        Route("/runs", pages.runs),
        Route("/runs/{run_id:str}", pages.run),
        Route("/runs/{run_id:str}/live", pages.live),
        Route("/runs/{run_id:str}/graph.svg", pages.graph_svg),
        Route(f"/runs/{{run_id:str}}/{ACTION}", pages.confirm, methods=["GET"]),
        Route(f"/runs/{{run_id:str}}/{ACTION}", pages.act, methods=["POST"]),
        Route("/api/runs", api.runs, methods=["GET"]),
        Route("/api/runs", api.start, methods=["POST"]),
        Route("/api/openapi.json", api.openapi),
        Route("/api/runs/{run_id:str}", api.run),
        Route("/api/runs/{run_id:str}/events", api.events),
        Route(f"/api/runs/{{run_id:str}}/{ACTION}", api.act, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, credentials=credentials)])
