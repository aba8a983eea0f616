"""Celery tasks of the workflow runtime."""
