"""``-A``/``--app``: the project's Celery app, found as ``celery -A`` finds it, made canvasflow's."""

from __future__ import annotations

from celery.app.utils import find_app

from canvasflow.app import init_app
from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import SettingsError


def use_app(target: str) -> None:
    """Find the app as ``celery -A`` does and make it canvasflow's (init_app, unless it was already)."""
    try:
        found = find_app(target)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"-A {target}: no Celery app found there ({exc})") from None
    if found is not current_app():
        init_app(found)
