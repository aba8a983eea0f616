"""Telemetry: one middleware interface around runs, steps, routing and compensations.

Logs, metrics, traces, the event stream and the rollback all listen on it (the interface and
its events: ``hooks``; who listens, and ``emit``: ``registry``), so the runtime calls no
feature by name. The built-ins the settings switch on (``builtin``) are installed by the
composition root, ``canvasflow.app``.
"""
