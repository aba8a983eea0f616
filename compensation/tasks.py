"""Celery tasks of the compensation runtime."""
