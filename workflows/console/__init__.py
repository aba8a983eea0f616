"""The web console: runs, their live graphs and steps, actions, a JSON API (docs/console.md).

``create_app`` is imported on first use: the console needs the ``ui`` extra (starlette,
jinja2), while ``console/credentials.py`` (checked by ``canvasflow ui`` first) needs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from canvasflow.workflows.console.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module("canvasflow.workflows.console.app").create_app
    globals()[name] = value
    return value
