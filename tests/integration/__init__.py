"""Tests against real services: Redis, Celery workers, Flower."""
