"""Where each module of the ``canvasflow`` package lives in this repository.

The installed namespace is ``canvasflow.*``; its parts live in the repository's top-level
folders (``config/`` is ``canvasflow.config``, ...). ``pyproject.toml`` declares that mapping
(``[tool.setuptools.package-dir]``) and is read here, so the import-boundary tests and the
type check see the modules under the names users import.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@cache
def package_dirs() -> dict[str, Path]:
    """``{"canvasflow.config": ROOT / "config", ...}``: the mapping pyproject.toml declares."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in tool["package-dir"].items()}


@cache
def declared_packages() -> tuple[str, ...]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return tuple(tool["packages"])


def _base(name: str) -> tuple[str, Path]:
    """The longest mapped package that ``name`` is in, and its folder."""
    dirs = package_dirs()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in dirs:
            return head, dirs[head]
    raise KeyError(name)


def package_folder(name: str) -> Path:
    """The folder that holds package ``name`` (``canvasflow.workers.routing`` -> workers/routing)."""
    head, folder = _base(name)
    rest = name[len(head) + 1 :].split(".") if name != head else []
    return folder.joinpath(*rest)


def module_file(name: str) -> Path:
    """Where module ``name`` would be: ``tests.x`` in this checkout, ``canvasflow.*`` by the mapping."""
    package, _, leaf = name.rpartition(".")
    if not name.startswith("canvasflow"):
        return ROOT.joinpath(*name.split(".")).with_suffix(".py")
    return package_folder(package) / f"{leaf}.py"


def modules() -> Iterator[tuple[str, Path]]:
    """Every Python file of the package: ``(dotted name, source file)``. Files in folders that
    are no package of their own (Alembic's ``migrations/``) are named by their place too."""
    for top, folder in package_dirs().items():
        nested = [f for n, f in package_dirs().items() if n != top and f.is_relative_to(folder)]
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts or any(path.is_relative_to(f) for f in nested):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([top, *parts]), path
