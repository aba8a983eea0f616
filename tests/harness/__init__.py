"""The test harness: real Redis, real Celery workers and Flower, as pytest fixtures.

``plugin`` (loaded from pyproject's addopts) sets the session up and holds the fixtures;
``redis_server``, ``workers``, ``flower`` and ``postgres`` each manage one kind of process.
"""
