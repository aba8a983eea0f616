"""The ``canvasflow`` command: the table of commands, the global options and the parser.

One module of this package defines each group of commands: its handlers, and the arguments
they take (``configure_parsers(add)``); no command module imports this one (Celery's
``celery/bin/``, procrastinate's CLI). The table below lists every command with the module that
defines it, so that a command loads its own module only and ``canvasflow --help`` none: this
module imports the standard library and ``_common`` only (tests/unit/test_cli_imports.py), and
what runs a parsed command (settings, the app, logging, errors) is ``process``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from canvasflow.workflows.cli._common import APP_HELP, DEBUG_HELP, WORKFLOWS_HELP, Handler, command_parser

# every command, in the order `canvasflow --help` lists them: its module (in this package), what it does
COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("runs", "start a workflow by name"),
    "status": ("status", "a run and its steps"),
    "runs": ("runs", "list runs"),
    "db": ("db", "the journal's schema: upgrade it, or show its revision"),
    "recover": ("runs", "rebuild lost run state from the journal; bring the journal up to Redis"),
    "resume": ("actions", "resume a failed, cancelled or stalled run"),
    "versions": ("versions", "which runs in flight could move to another version (versions check)"),
    "migrate": ("versions", "move a run to another version of its workflow, keeping completed steps"),
    "cancel": ("actions", "cancel a run"),
    "undo": ("actions", "compensate every step of a succeeded or cancelled run"),
    "compensate": ("actions", "retry failed compensations of a run (of a cancelled one: undo it)"),
    "check": ("definitions", "steps that write but have no compensation"),
    "signal": ("actions", "send a signal to a waiting run"),
    "graph": ("definitions", "draw a workflow or a run"),
    "workflows": ("definitions", "list registered workflows"),
    "queues": ("worker", "capabilities, their queues and depths"),
    "engines": ("worker", "engines, their live workers, consumers, queue depth, in-flight steps"),
    "worker": ("worker", "run a worker for capabilities (Celery's worker options pass through)"),
    "history": ("history", "a run's events in order: attempts, errors and tracebacks, rollback"),
    "deadletters": ("deadletters", "malformed messages workers refused, newest first"),
    "ui": ("ui", "serve the web console (runs, live graphs, actions, JSON API)"),
    "flower": ("ui", "run Flower with basic auth and persistent state"),
    "demo": ("demo", "run the demo workflow end to end"),
    "deploy": ("deploy", "Kubernetes manifests from the capability and engine registries"),
    "worker-probe": ("deploy", "exit 0 while this host's worker node sends heartbeats"),
    "prune": ("prune", "delete old finished runs, their steps and events from the journal"),
    "schedule": ("schedule", "start workflows on a schedule (celery beat): add, list, remove"),
    "metrics": ("metrics", "serve Prometheus metrics (/metrics) of this host's canvasflow processes"),
    "events": ("events", "the event stream: run and step events as they happen"),
}


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workflows", help=WORKFLOWS_HELP)
    parser.add_argument("-A", "--app", help=APP_HELP)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser: every command is listed; those of ``commands`` (default: every one) take their
    arguments and have their handler, from their modules, which are imported here."""
    p = argparse.ArgumentParser(
        prog="canvasflow",
        description="Workflows on Celery. Modules are found from the working directory, as with celery -A.",
    )
    _global_options(p)
    sub = p.add_subparsers(dest="command", required=True)
    parsers = {name: command_parser(sub, name, help_) for name, (_, help_) in COMMANDS.items()}

    def add(name: str, handler: Handler) -> argparse.ArgumentParser:
        parsers[name].set_defaults(fn=handler)
        return parsers[name]

    chosen = COMMANDS if commands is None else [c for c in commands if c in COMMANDS]
    for module in dict.fromkeys(COMMANDS[c][0] for c in chosen):
        # command modules are loaded on demand: a command pays for its own imports only
        importlib.import_module(f"{__package__}.{module}").configure_parsers(add)
    return p


def command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, found as the parser finds it (None: none, or no telling)."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    _global_options(pre)
    pre.add_argument("command", nargs="?")
    try:
        return pre.parse_known_args(argv)[0].command
    except argparse.ArgumentError:  # the parser proper says what is wrong
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error is one line (or JSON with --json), exit 2, a traceback only with --debug."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_in(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    # a command that runs loads settings, logging and error reports (`--help` stopped above)
    from canvasflow.workflows.cli.process import run_command

    return run_command(args)
