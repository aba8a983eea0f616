"""The web console: runs, their live graphs and steps, actions, a JSON API (docs/console.md).

A face: ``create_app`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canvasflow.config.faces import lazy

if TYPE_CHECKING:
    from canvasflow.workflows.console.app import create_app

_EXPORTS = {"create_app": "canvasflow.workflows.console.app"}
__getattr__, __dir__ = lazy(__name__, _EXPORTS)

__all__ = ["create_app"]
