"""What the ``canvasflow`` commands share: the options every command takes, JSON input, and
output (``--json`` for machines, text for people).

A command module exposes ``configure_parsers(add)``: for each of its commands, ``add(name,
handler)`` (an :data:`AddCommand`) hands it the command's parser, made by :func:`command_parser`
with the shared options on it, and the module adds the command's own arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from canvasflow.config.errors import InputError

Handler = Callable[[argparse.Namespace], int]
AddCommand = Callable[[str, Handler], argparse.ArgumentParser]

WORKFLOWS_HELP = "workflow modules to import, a,b (overrides CANVASFLOW_WORKFLOW_MODULES)"
APP_HELP = "your Celery app, as for celery -A (adopted with init_app); default canvasflow.app"
DEBUG_HELP = "on an error, show the Python traceback instead of one line"
RUN_HELP = "the run's id (see `canvasflow runs`)"
WAIT_HELP = "wait until the run ends (or waits for a signal), then show it"
TIMEOUT_HELP = "seconds --wait waits before giving up (exit 3); default 300"


def command_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse.ArgumentParser:
    """Command ``name``'s parser: it takes ``--json``, and the global options again (so that they
    may follow the command's name)."""
    sp = sub.add_parser(name, help=help_)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--workflows", default=argparse.SUPPRESS, help=WORKFLOWS_HELP)
    sp.add_argument("-A", "--app", default=argparse.SUPPRESS, help=APP_HELP)
    sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return sp


JSON_SOURCES = "JSON, @FILE (a file's contents) or - (standard input)"


def load_json(text: str | None, what: str) -> Any:
    """The JSON an option gave (``{}`` when it was not given): a literal, ``@path`` (the file's
    contents, as curl's ``-d @file``) or ``-`` (standard input), so that an input above the
    system's limit on one argument (128 KiB on Linux) can be given; InputError naming ``what``."""
    if text is None:
        return {}
    source = repr(text)
    if text == "-":
        text, source = sys.stdin.read(), "standard input"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text, source = f.read(), path
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"{what} @{path}: cannot read the file ({reason})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{what} is not JSON ({exc}): {source}") from None


def emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else the text ``text()`` makes of it."""
    print(json.dumps(data, indent=2, default=str) if args.json else text())


def print_error(args: argparse.Namespace, message: str, kind: str) -> None:
    """An error: ``{"error", "type"}`` on stdout with ``--json``, else one line on stderr."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "type": kind}))
    else:
        print(f"error: {message}", file=sys.stderr)
