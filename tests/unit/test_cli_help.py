"""Every option and argument of every ``canvasflow`` command says what it is for."""

from __future__ import annotations

import argparse

from canvasflow.workflows.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{prog} {'/'.join(a.option_strings) or a.dest}"
        for prog, parser in _parsers(build_parser())
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not (a.help or "").strip()
    ]
    assert len(_parsers(build_parser())) > 15
    assert missing == []


def test_the_global_debug_flag_is_known_to_every_command() -> None:
    args = build_parser().parse_args(["status", "some-run", "--debug"])
    assert args.debug is True
    assert build_parser().parse_args(["--debug", "runs"]).debug is True
    assert build_parser().parse_args(["runs"]).debug is False


def test_list_runs_refuses_an_unknown_status() -> None:
    import pytest

    from canvasflow.config.errors import InputError
    from canvasflow.workflows import list_runs

    with pytest.raises(InputError, match="unknown run status 'bogus': one of pending, running"):
        list_runs(status="bogus")
