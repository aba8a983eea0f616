"""The web console: runs, their live graphs and steps, actions, a JSON API (docs/console.md)."""

from canvasflow.workflows.console.app import create_app

__all__ = ["create_app"]
