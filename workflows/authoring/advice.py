"""Advice at definition time: what a ``build`` function writes that Celery accepts but that seldom
means what it says, found by reading its source (each a :class:`DefinitionWarning`).

Celery runs a ``group`` of one signature as that signature alone (``chain | group`` unrolls it
as the chain is built, before canvasflow ever sees the group), so the next step gets a value
instead of a list of one: a new user's ``KeyError: 0``. Only literal groups are found
(``group(sig)``, ``group([sig])``); a group of a list made at run time cannot be told.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from canvasflow.config.errors import DefinitionWarning

MAX_TRIES = 200  # ends of a lambda's text tried before giving up on reading it


def advise(name: str, build: Callable[..., Any]) -> None:
    """Warn (DefinitionWarning) of every one-signature group literal in ``build``'s source."""
    tree = _parsed(build)
    if tree is None:
        return
    for call in _one_member_groups(tree):
        member = ast.unparse(call.args[0].elts[0] if isinstance(call.args[0], ast.List) else call.args[0])
        warnings.warn(
            f"workflow {name}: {ast.unparse(call)} has one signature, so Celery runs it as that "
            f"signature alone: the next step gets its result, not a list of one. Write "
            f"chord([{member}], next_step) to hand a list of one on, or {member} without the group",
            DefinitionWarning,
            stacklevel=3,
        )


def _parsed(build: Callable[..., Any]) -> ast.AST | None:
    """The syntax tree of ``build`` (a lambda: of its expression alone); None when there is no source."""
    try:
        source = textwrap.dedent(inspect.getsource(build))
    except (OSError, TypeError):  # defined in a REPL or built at run time: nothing to read
        return None
    try:
        return ast.parse(source)
    except SyntaxError:  # a lambda cut out of a longer statement: find where its expression ends
        start = source.find("lambda")
        text = source[start:] if start >= 0 else ""
        ends = [i + 1 for i, c in enumerate(text) if c in ")]}" or c.isalnum()]
        for end in reversed(ends[-MAX_TRIES:]):
            try:
                return ast.parse(text[:end], mode="eval")
            except SyntaxError:
                continue
    return None


def _one_member_groups(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _named(node.func, "group")) or node.keywords:
            continue
        if len(node.args) != 1:
            continue
        (arg,) = node.args
        if (
            isinstance(arg, ast.List) and len(arg.elts) == 1 and not isinstance(arg.elts[0], ast.Starred)
        ) or (isinstance(arg, ast.Call) and _is_signature(arg)):
            yield node


def _named(func: ast.expr, name: str) -> bool:
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name
    )


def _is_signature(call: ast.Call) -> bool:
    """``task.s(...)``, ``task.si(...)``, ``task.signature(...)``, ``signature(...)``."""
    return any(_named(call.func, n) for n in ("s", "si", "signature"))
