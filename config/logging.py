"""structlog set-up: JSON lines in production, a readable console in development.

structlog always hands its events to stdlib logging; ``configure_logging`` (workers, CLI)
renders them and Celery's own records through the same processors, so a worker writes one
format.
Inside a task every line carries ``task_id`` and ``task_name`` (bound by workers.signals).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _route_structlog_through_stdlib() -> None:
    """structlog events become stdlib records; what prints them is the process's choice."""
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging(log_format: str = "json", level: str = "INFO", *, force: bool = False) -> None:
    """Install one stderr handler rendering every record (structlog's and Celery's) as JSON lines
    or console text. For processes canvasflow owns (workers, the CLI); a library user keeps
    their own logging set-up. Safe to call more than once."""
    global _configured
    if _configured and not force:
        return
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


_route_structlog_through_stdlib()
