"""Telemetry: one middleware interface around runs, steps, routing and compensations.

Logs, metrics, traces, the event stream and the rollback all listen on it (``hooks``), so
the runtime calls no feature by name.
"""
