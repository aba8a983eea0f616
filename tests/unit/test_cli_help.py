"""Every option and argument of every ``canvasflow`` command says what it is for."""

from __future__ import annotations

import argparse

import pytest

from canvasflow.workflows.cli.main import COMMANDS, build_parser, command_in


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


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_a_command_loads_its_own_module_and_parses_as_with_every_command() -> None:
    """``main`` builds the parser of the command ``argv`` names only: the listing, the command's
    help and what it parses are those of the parser with every command."""
    full = build_parser()
    assert list(_subparsers(full)) == list(COMMANDS)
    assert build_parser([]).format_help() == full.format_help()
    for name in COMMANDS:
        assert _subparsers(build_parser([name]))[name].format_help() == _subparsers(full)[name].format_help()
    for argv in (
        ["status", "r1"],
        ["--debug", "status", "r1"],
        ["-A", "shop.celery", "runs", "--json"],
        ["--app=shop", "runs"],
        ["-Ashop", "runs"],
        ["--work", "a,b", "start", "w", "--input", "{}"],
        ["-A", "runs", "status", "r1"],
        ["status", "r1", "-A", "shop", "--workflows", "x"],
        ["graph", "-A", "status", "r1"],
        ["worker", "--capability", "a", "--", "--without-gossip"],
        ["--debug", "--workflows=x", "worker", "--control", "--", "-Q", "x"],
    ):
        parsed = full.parse_args(argv)
        assert command_in(argv) == parsed.command, argv
        assert build_parser([parsed.command]).parse_args(argv) == parsed, argv


@pytest.mark.parametrize("argv", [[], ["--debug"], ["--workflows", "status"], ["bogus"], ["-A"]])
def test_without_a_command_the_parser_says_so_as_with_every_command(argv, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    expected = capsys.readouterr()
    with pytest.raises(SystemExit):
        build_parser([c for c in [command_in(argv)] if c]).parse_args(argv)
    assert capsys.readouterr() == expected


def test_list_runs_refuses_an_unknown_status() -> None:
    from canvasflow.config.errors import InputError
    from canvasflow.workflows import list_runs

    with pytest.raises(InputError, match="unknown run status 'bogus': one of pending, running"):
        list_runs(status="bogus")
