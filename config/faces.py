"""Package faces: a package's ``__init__`` hands on names its modules define, each imported on
first use, and registers nothing::

    _EXPORTS = {"Workflow": "canvasflow.workflows.authoring.definition", ...}
    __getattr__, __dir__ = lazy(__name__, _EXPORTS)

So importing one module of a package (``canvasflow.workers.capabilities``) imports that
module's own imports and not the rest of the package. A name maps to the module that defines
it; where that module has no such attribute, the name is its submodule (``blobs``).

``keep`` names an export that shares its name with a submodule of the package (``step``, the
decorator, and ``canvasflow.workers.step``, its module): the import system binds a submodule
on its package when it is first imported, which would hide the export; a kept name stays the
export, as it was when the face imported it eagerly. The submodule itself stays importable
(``from canvasflow.workers.step import StepTask``).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


class _Face(types.ModuleType):
    """A package module whose kept exports win over its submodules of the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_kept_exports", ()):
            return  # the import system binding the submodule: the name stays the export
        super().__setattr__(name, value)


def lazy(
    package: str, exports: Mapping[str, str], *, keep: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of package ``package`` handing on ``exports``
    (name -> the module that defines it)."""
    face = sys.modules[package]
    namespace = vars(face)
    if keep:
        namespace["_kept_exports"] = frozenset(keep)
        face.__class__ = _Face

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source = importlib.import_module(module)
        value = getattr(source, name, None)
        if value is None:  # a submodule (``from canvasflow import blobs``)
            value = importlib.import_module(f"{module}.{name}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
