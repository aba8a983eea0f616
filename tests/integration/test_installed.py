"""canvasflow as a user gets it: the built wheel installed into a fresh virtualenv.

The wheel is built as a user builds it, ``pip wheel --no-deps`` on a copy of the sources
(pip's isolated build environment fetches the build backend from the package index that
``make install`` uses, and caches it).

How the virtualenv is made, honestly and fast: ``python -m venv --without-pip`` (a real,
empty environment: nothing in its site-packages), then the wheel built from this checkout
is installed into it with ``pip --python <venv> install --no-deps``. Only then is a
``.pth`` file added that appends the shared virtualenv's site-packages, where canvasflow's
dependencies (celery, redis, sqlalchemy, ...) are already installed: no download, and the
dependencies are the versions the rest of the suite runs. A ``.pth`` directory is searched
after the venv's own site-packages and its own ``.pth`` files are not processed, so the
editable install of canvasflow living there is not active: ``canvasflow`` is imported from
the wheel, which the tests check.

Beside it, an application with its own ``config``, ``workers`` and ``workflows`` packages
(the layout that collided with canvasflow's old top-level packages) runs a workflow on a
real worker started with the venv's ``canvasflow`` command. The same environment is where
mypy --strict checks the README's typed examples: canvasflow is found there only as an
installed package, so its ``py.typed`` is what makes it checkable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.plugin import HarnessSession
from tests.integration.projects import ROOT, node, readme_blocks, spawn, token, write_project

SOURCES = ["canvasflow", "config", "workers", "workflows", "compensation", "pyproject.toml", "README.md"]
TYPING = ROOT / "tests" / "typing"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    top_level_after_install: set[str]

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The session's settings; no PYTHONPATH, so nothing of this checkout is importable."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a copy: building in place would leave build/ and *.egg-info here
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(src)], check=True, timeout=240
    )
    (wheel,) = (work / "dist").glob("canvasflow-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True, timeout=120
    )
    top_level = {p.name for p in site.iterdir()}
    (site / "canvasflow_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield Installed(wheel, venv, site, top_level)


def test_the_wheel_holds_one_package_and_its_type_marker(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n.split("/", 1)[0] for n in names} == {"canvasflow", "canvasflow-0.1.0.dist-info"}
    assert "canvasflow/py.typed" in names
    assert {"canvasflow/config/settings.py", "canvasflow/workers/step.py", "canvasflow/app.py"} <= set(names)
    assert installed.top_level_after_install == {"canvasflow", "canvasflow-0.1.0.dist-info"}
    assert (installed.bin / "canvasflow").is_file()


APP = {
    "config/__init__.py": '"""The application\'s own settings package (as in cookiecutter-django)."""\n',
    "config/settings.py": "SHOP_NAME = 'corner shop'\n",
    "workers/__init__.py": '"""The application\'s own workers package."""\n',
    "workers/steps.py": """
        from config.settings import SHOP_NAME

        from canvasflow import step


        @step(name="fulfil.pack", capability="{cap}")
        def pack(order_id: int) -> str:
            return f"{{SHOP_NAME}}: packed order {{order_id}}"


        @step(name="fulfil.ship", capability="{cap}")
        def ship(packed: str) -> str:
            return packed + ", shipped"
    """,
    "workflows/__init__.py": '"""The application\'s own workflows package."""\n',
    "workflows/fulfilment.py": """
        from celery import chain

        import workflows
        from canvasflow import Workflow
        from workers.steps import pack, ship

        assert workflows.__file__.startswith({app_dir!r}), workflows.__file__


        def _fulfil(order_id: int) -> object:
            return chain(pack.s(order_id), ship.s())


        Workflow("{flow}", version="1", build=_fulfil)
    """,
}


@pytest.mark.redis
@pytest.mark.worker
def test_a_workflow_runs_beside_an_app_with_its_own_config_workers_and_workflows(
    installed: Installed, tmp_path: Path, canvasflow_session: HarnessSession
) -> None:
    cap, flow = f"fulfil{token()}", f"fulfil_{token()}"
    app_dir = tmp_path / "shop"
    write_project(app_dir, {k: v.format(cap=cap, flow=flow, app_dir=str(app_dir)) for k, v in APP.items()})
    env = installed.env(CANVASFLOW_WORKFLOW_MODULES='["workflows.fulfilment"]')

    where = subprocess.run(
        [
            str(installed.bin / "python"),
            "-c",
            "import canvasflow, config; print(canvasflow.__file__, config.__file__)",
        ],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(installed.site_packages)) and where[1].startswith(str(app_dir))

    worker = spawn(
        [str(installed.bin / "canvasflow"), "worker", "--capability", cap, "--control", "-c", "1"],
        cwd=app_dir,
        env=env,
        log_dir=canvasflow_session.log_dir,
        hostname=node(cap),
    )
    try:
        worker.wait_ready(60)
        out = subprocess.run(
            [
                str(installed.bin / "canvasflow"),
                "start",
                flow,
                "--input",
                '{"order_id": 7}',
                "--wait",
                "--json",
            ],
            cwd=app_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        record = json.loads(out.stdout)
        assert (record["status"], record["result"]) == ("succeeded", "corner shop: packed order 7, shipped")
        assert {s["worker"] for s in record["steps"]} == {node(cap)}
    finally:
        worker.stop()


MYPY_INI = """
[mypy]
strict = True
cache_dir = {cache}

[mypy-celery.*]
ignore_missing_imports = True
"""


def _mypy(installed: Installed, where: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    (where / "mypy.ini").write_text(MYPY_INI.format(cache=where / ".mypy_cache"))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--python-executable", str(installed.bin / "python"), *targets],
        cwd=where,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def _readme_project(where: Path) -> Path:
    """The README's ``# myapp/...`` blocks, each written to the file its first line names."""
    files = {}
    for block in readme_blocks("# myapp/"):
        first, _, rest = block.partition("\n")
        files[first.removeprefix("# ").strip()] = rest
    assert {"myapp/steps.py", "myapp/flows.py", "myapp/checkout.py"} <= set(files)
    write_project(where, {"myapp/__init__.py": "", **files})
    for name in ("uses_readme.py", "wrong_calls.py"):
        shutil.copy(TYPING / name, where / name)
    return where


def test_mypy_strict_passes_on_the_readme_examples_and_catches_wrong_calls(
    installed: Installed, tmp_path: Path
) -> None:
    project = _readme_project(tmp_path)
    good = _mypy(installed, project, "myapp", "uses_readme.py")
    assert good.returncode == 0, good.stdout + good.stderr

    bad = _mypy(installed, project, "wrong_calls.py")
    expected = {
        (n, m.group(1))
        for n, line in enumerate((project / "wrong_calls.py").read_text().splitlines(), 1)
        if (m := re.search(r"# E: ([\w-]+)", line))
    }
    reported = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"^wrong_calls\.py:(\d+): error: .*\[([\w-]+)\]$", bad.stdout, re.M)
    }
    assert len(expected) == 5 and reported == expected, bad.stdout
