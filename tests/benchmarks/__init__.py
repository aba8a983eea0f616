"""Benchmarks: canvasflow against raw Celery on the same worker (``python -m tests.benchmarks.run``)."""
