"""The test harness: real Redis, RabbitMQ, Celery workers and Flower, as pytest fixtures.

``plugin`` (loaded from pyproject's addopts) sets the session up and holds the fixtures;
``redis_server``, ``rabbitmq``, ``workers``, ``flower`` and ``postgres`` each manage one kind
of process or service.
"""
