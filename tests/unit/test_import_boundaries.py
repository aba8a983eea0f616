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
    compensation/{rollback,decorator}.py) is gone: no strongly connected group of modules holds
    both a compensation module and a runtime (or step) module."""
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
    mixed = [
        sorted(g)
        for g in groups
        if any(m.startswith("canvasflow.compensation") for m in g)
        and any(m.startswith(("canvasflow.workflows.runtime", "canvasflow.workers")) for m in g)
    ]
    assert not mixed, f"import cycles between compensation and the runtime: {mixed}"
    assert "canvasflow.compensation.rollback" in graph and "canvasflow.workers.step" in graph
