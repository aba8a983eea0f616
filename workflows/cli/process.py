"""What runs a parsed ``canvasflow`` command: the process's modules, app and logging, and what
an error prints and exits with.

Every command takes ``--json`` for machines. An error is one line (or ``{"error", "type"}`` with
--json) and exit 2 when the operator can fix it, 1 when unexpected (``workflows/views/errors.py``),
3 when --wait gave up; ``--debug`` shows the traceback instead.

The process is not composed here: a command whose work needs the composition root (starting,
resuming, cancelling runs; workers; the console) imports it through its own module, so that
``canvasflow status`` reads a run without loading every task and listener.
"""

from __future__ import annotations

import argparse
import os
import sys

from canvasflow.config.logging import configure_logging
from canvasflow.config.settings import get_settings, set_for_process
from canvasflow.workflows.cli._common import print_error
from canvasflow.workflows.views.errors import explain


def find_modules_here(workflows: str | None) -> None:
    """As ``celery -A`` does: the working directory on ``sys.path``; ``--workflows`` over the setting."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    if workflows is not None:
        set_for_process(workflow_modules=[m.strip() for m in workflows.split(",") if m.strip()])


def run_command(args: argparse.Namespace) -> int:
    """Run the command ``args`` name; its exit status (errors told as the module docstring says)."""
    try:
        find_modules_here(args.workflows)
        if args.app and args.command != "worker":  # the worker command passes it on to celery
            # -A: the project's app, adopted by the composition root, only when one is named
            from canvasflow.workflows.cli.adopt import use_app

            use_app(args.app)
        configure_logging(get_settings().log_format, "WARNING" if args.command != "worker" else "INFO")
        status = int(args.fn(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below
        return status
    except BrokenPipeError:  # `canvasflow runs | head`: the reader left; nothing to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except TimeoutError as exc:
        if args.debug:
            raise
        print_error(args, str(exc), "TimeoutError")
        return 3
    except Exception as exc:
        if args.debug:
            raise
        told = explain(exc)
        print_error(args, told.message, told.kind)
        return told.status
