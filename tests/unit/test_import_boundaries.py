"""The runtime does not call compensation: the rollback listens to its events (runtime/control.py).

Imports are read with ``ast`` from the source (also those inside functions, which a late
import would hide from an import-time check)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"config": "config", "workers": "workers", "workflows": "workflows", "compensation": "compensation"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["canvasflow", *parts])


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as an absolute ``canvasflow.*`` name."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def _modules(folder: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / folder).rglob("*.py"))}


def test_no_runtime_module_imports_compensation():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            i for i in _imports(path) if i.startswith("canvasflow.compensation")
        )
        for path in (ROOT / "workflows" / "runtime").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"workflows/runtime/ must not import canvasflow.compensation: {offenders}"
    assert len(list((ROOT / "workflows" / "runtime").rglob("*.py"))) > 10  # the files were found


def test_no_import_cycle_between_runtime_steps_and_compensation():
    """The cycle the issue named (workers/step.py, runtime/{executor,failure,special}.py,
    compensation/{rollback,decorator}.py) is gone: no compensation module is in an import
    cycle, neither with the runtime and the steps nor among themselves."""
    modules: dict[str, Path] = {}
    for folder in ("compensation", "workers", "workflows/runtime"):
        modules.update(_modules(folder))
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

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
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            groups.append(group)

    for m in graph:
        if m not in index:
            visit(m)
    cycles = [
        sorted(g) for g in groups if len(g) > 1 and any(m.startswith("canvasflow.compensation") for m in g)
    ]
    assert not cycles, f"import cycles through compensation (with the runtime or within): {cycles}"
    assert "canvasflow.compensation.rollback" in graph and "canvasflow.workers.step" in graph


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
