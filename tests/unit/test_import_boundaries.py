"""Imports point down the floors of docs/ARCHITECTURE.md, and nothing goes round in a circle.

Every import of the package is read with ``ast`` from the source, those inside functions and
under ``if TYPE_CHECKING:`` included (a late import would hide from a check made by importing),
with each module under the name users import (tests/layout.py reads the mapping).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.layout import ROOT, modules

# bottom to top: a module may import its own floor and those below it (docs/ARCHITECTURE.md)
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("config", ("canvasflow.config",)),
    (
        "fleet registries",
        (
            "canvasflow.workers.capabilities",
            "canvasflow.workers.engines",
            "canvasflow.workers.beats",
            "canvasflow.workers.routing",
            "canvasflow.workers.limits",
            "canvasflow.workers.deploy",
        ),
    ),
    (
        "telemetry interface",
        ("canvasflow.workflows.telemetry.hooks", "canvasflow.workflows.telemetry.registry"),
    ),
    ("store", ("canvasflow.workflows.store",)),
    ("runtime", ("canvasflow.workflows.runtime",)),
    (
        "host",
        (
            "canvasflow.workers.step",
            "canvasflow.workers.hybrid",
            "canvasflow.workers.admission",
            "canvasflow.workers.actions",
            "canvasflow.workers.heartbeat",
            "canvasflow.workers.fleet",
        ),
    ),
    (
        "telemetry built-ins",
        (
            "canvasflow.workflows.telemetry.builtin",
            "canvasflow.workflows.telemetry.logs",
            "canvasflow.workflows.telemetry.metrics",
            "canvasflow.workflows.telemetry.tracing",
            "canvasflow.workflows.telemetry.events",
        ),
    ),
    ("compensation", ("canvasflow.compensation",)),
    ("authoring", ("canvasflow.workflows.authoring",)),
    ("runs", ("canvasflow.workflows.runs",)),
    (
        "tasks",
        (
            "canvasflow.workflows.tasks",
            "canvasflow.workflows.worker_hooks",
            "canvasflow.workflows.telemetry.exporter",
            "canvasflow.workers.signals",
            "canvasflow.workers.demo",
            "canvasflow.workflows.demo",
        ),
    ),
    ("composition root", ("canvasflow.app",)),
    ("client", ("canvasflow.workflows.client",)),
    (
        "faces",
        (
            "canvasflow.workflows.views",
            "canvasflow.workflows.cli",
            "canvasflow.workflows.console",
            "canvasflow.testing",
            "canvasflow.pytest_plugin",
            "canvasflow.aio",
        ),
    ),
]
LATE_IMPORT_BUDGET = 40  # imports of the package's own modules made inside functions


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a name imported from a package: that package)
    line: int
    late: bool  # inside a function
    typing_only: bool  # under `if TYPE_CHECKING:`
    commented: bool  # a comment on its line or the line above says why


@cache
def _all() -> dict[str, Path]:
    return {name: path for name, path in modules() if ".migrations." not in name}


def _resolve(name: str) -> str | None:
    known = _all()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _is_package(name: str) -> bool:
    return _all()[name].name == "__init__.py"


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = _all()[module]
    source = path.read_text()
    lines = source.splitlines()
    package = module.split(".") if _is_package(module) else module.split(".")[:-1]
    found: list[Import] = []

    def add(node: ast.Import | ast.ImportFrom, targets: list[str], late: bool, typing_only: bool) -> None:
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        commented = "#" in here or above.startswith("#")
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.append(Import(module, resolved, node.lineno, late, typing_only, commented))

    def visit(node: ast.AST, late: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.startswith("canvasflow")]
                add(child, names, late, typing_only)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package[: len(package) - child.level + 1], *([base] if base else [])])
                if base.startswith("canvasflow"):
                    add(child, [f"{base}.{a.name}" for a in child.names], late, typing_only)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for part in child.body:
                    visit(ast.Module(body=[part], type_ignores=[]), late, True)
                for part in child.orelse:
                    visit(ast.Module(body=[part], type_ignores=[]), late, typing_only)
            else:
                inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                visit(child, late or inner, typing_only)

    visit(ast.parse(source, str(path)), False, False)
    return tuple(found)


def _edges() -> Iterator[Import]:
    """Every import that runs: a package face's imports for type checkers only are no edge."""
    for module in _all():
        for imp in imports_of(module):
            if not (imp.typing_only and _is_package(module)):
                yield imp


def floor_of(module: str) -> int | None:
    best, floor = "", None
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, i
    return floor


def test_the_modules_are_found():
    names = set(_all())
    assert {"canvasflow.workflows.runtime.executor", "canvasflow.workers.step", "canvasflow.app"} <= names
    assert len(names) > 100


def test_every_module_stands_on_a_floor():
    homeless = [m for m in _all() if not _is_package(m) and floor_of(m) is None]
    assert homeless == [], "add these modules to a floor in FLOORS and in docs/ARCHITECTURE.md"


def test_imports_point_down_the_floors():
    upward = sorted(
        f"{imp.source}:{imp.line} -> {imp.target} ({FLOORS[floor_of(imp.source)][0]} -> "  # type: ignore[index]
        f"{FLOORS[floor_of(imp.target)][0]})"  # type: ignore[index]
        for imp in _edges()
        if not _is_package(imp.source)
        and not _is_package(imp.target)
        and (floor_of(imp.source) or 0) < (floor_of(imp.target) or 0)
    )
    assert upward == []


def test_package_faces_only_hand_on_names_of_their_own_package():
    """An ``__init__.py`` imports (if at all) from inside its own package and the face helper
    (config/faces.py): it hands names on and registers nothing."""
    strays = sorted(
        f"{imp.source}:{imp.line} -> {imp.target}"
        for imp in _edges()
        if _is_package(imp.source)
        and not imp.target.startswith(imp.source + ".")
        and imp.target not in ("canvasflow.config.faces", "canvasflow.config")
    )
    assert strays == []


def test_no_import_circles():
    graph: dict[str, set[str]] = {m: set() for m in _all()}
    for imp in _edges():
        graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for m in graph:
        if m not in index:
            visit(m)
    assert circles == []


def test_imports_inside_functions_are_few_and_say_why():
    late = [imp for imp in _edges() if imp.late]
    statements = {(imp.source, imp.line) for imp in late}
    silent = sorted(f"{imp.source}:{imp.line} -> {imp.target}" for imp in late if not imp.commented)
    assert silent == [], "an import inside a function says why in a comment (an optional extra, a command)"
    assert len(statements) <= LATE_IMPORT_BUDGET, sorted(statements)


def test_no_runtime_module_imports_compensation():
    """The runtime does not call compensation: the rollback listens to its events (runtime/control.py)."""
    offenders = sorted(
        f"{imp.source} -> {imp.target}"
        for imp in _edges()
        if imp.source.startswith("canvasflow.workflows.runtime")
        and imp.target.startswith("canvasflow.compensation")
    )
    assert offenders == []


# modules a process may import before anything else: low ones register nothing; the composition
# root (canvasflow.app), the client and init_app put the process together, each once
FIRST_IMPORTS = (
    "canvasflow.config.settings",
    "canvasflow.compensation.claims",  # a compensation module first: it reads the runtime's state helpers
    "canvasflow.compensation.delivery",
    "canvasflow.workflows.runtime.executor",
    "canvasflow.workers.step",
    "canvasflow.workflows.store.sql",
    "canvasflow.workflows.telemetry.registry",
)
COMPOSERS = ("canvasflow.app", "canvasflow.workflows.client", "init_app")

COMPOSED = """
import importlib, sys
from celery import Celery

first, order = sys.argv[1], sys.argv[2].split(",")
importlib.import_module(first)
from canvasflow.workflows.telemetry import registry

def rollbacks():
    assert registry.core_listening("on_rollback_needed") == bool(registry._core), registry._core
    return sum(type(mw).__name__ == "Rollback" for mw in registry.middlewares())

assert rollbacks() == 0, f"importing {first} registered the rollback"
for composer in order:
    if composer == "init_app":
        import canvasflow
        canvasflow.init_app(Celery("project", set_as_current=False))
    else:
        importlib.import_module(composer)
    assert rollbacks() == 1, f"{first} then {composer}: {rollbacks()} rollback listeners"
"""

FACES_ONLY = """
import importlib, sys
from tests.layout import declared_packages

packages = set(declared_packages())
for package in sorted(packages):
    importlib.import_module(package)
loaded = {m for m in sys.modules if m.startswith("canvasflow")} - packages - {"canvasflow.config.faces"}
assert not loaded, f"importing the package faces imported {sorted(loaded)}"
"""


def _run_all(scripts: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each script in a fresh interpreter (all at once); the last error line of those that fail."""
    import subprocess
    import sys

    running = {
        name: subprocess.Popen(
            [sys.executable, "-c", *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, argv in scripts.items()
    }
    failed = {}
    for name, process in running.items():
        _, err = process.communicate(timeout=120)
        if process.returncode:
            failed[name] = err.strip().splitlines()[-1:]
    return failed


def test_the_rollback_listens_whatever_is_imported_first():
    """However a process starts (a low module first), importing the composition root, the client
    or calling init_app registers the rollback listener, and any of them again adds none: each
    process below tries the three in another order, checking after each."""
    scripts = {}
    for i, module in enumerate(FIRST_IMPORTS):
        order = COMPOSERS[i % 3 :] + COMPOSERS[: i % 3]
        scripts[f"{module} then {order[0]}"] = [COMPOSED, module, ",".join(order)]
    failed = _run_all(scripts)
    assert not failed, f"these starts break: {failed}"


def test_the_package_faces_register_and_import_nothing():
    """A package face hands names on lazily: importing every one of them imports no module of
    canvasflow beyond the faces, so it registers no task, listener or middleware."""
    failed = _run_all({"faces": [FACES_ONLY]})
    assert not failed, failed
