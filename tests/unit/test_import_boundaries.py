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


FIRST_IMPORTS = (
    "canvasflow.app",  # what `celery -A canvasflow.app worker` loads
    "canvasflow.compensation.claims",  # a compensation module first: it reads the runtime's state helpers
    "canvasflow.compensation.delivery",
    "canvasflow.workflows.runtime.executor",
    "canvasflow.workers.step",
)


def test_the_rollback_listens_whatever_is_imported_first():
    """However a process starts, importing canvasflow works and the rollback is registered."""
    import subprocess
    import sys

    check = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); import canvasflow.workflows; "
        "from canvasflow.workflows.telemetry.hooks import core_listening; "
        "assert core_listening('on_rollback_needed'), 'no rollback listener'"
    )
    failed = {}
    for module in FIRST_IMPORTS:
        done = subprocess.run([sys.executable, "-c", check, module], capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            failed[module] = done.stderr.strip().splitlines()[-1:]
    assert not failed, f"importing these first breaks: {failed}"
