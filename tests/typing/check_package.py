"""Type-check the ``canvasflow`` package under the names users import (``make lint``).

mypy finds a package by its folder name, and canvasflow's folders are not named after their
packages (``config/`` is ``canvasflow.config``: pyproject.toml maps them). So this hands mypy
every module with its dotted name, read from that mapping, and mypy's settings from
``[tool.mypy]``; errors name the files as they are in the repository.

    python -m tests.typing.check_package
"""

from __future__ import annotations

import sys

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

from tests.layout import ROOT, modules


def main() -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "-c", "pass"])
    sources = [BuildSource(str(path.relative_to(ROOT)), name, None) for name, path in modules()]
    try:
        result = build.build(sources, options)
    except CompileError as exc:
        result_errors = exc.messages
    else:
        result_errors = result.errors
    for line in result_errors:
        print(line)
    print(f"{'Found errors' if result_errors else 'Success: no issues'} in {len(sources)} modules")
    return 1 if result_errors else 0


if __name__ == "__main__":
    sys.exit(main())
