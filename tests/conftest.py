"""Fixtures come from the harness plugin, loaded with ``-p tests.harness.plugin`` in
pyproject's addopts so it configures the session before any conftest or test imports
the Celery app. Nothing here may import ``config.celery_app`` at module level."""
