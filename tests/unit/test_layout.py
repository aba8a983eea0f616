"""The package is one import root, ``canvasflow``, mapped from the repository's folders by
pyproject.toml: no links, no second copy of a module under another name."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.layout import ROOT, declared_packages, package_dirs, package_folder

FOLDERS = ("config", "workers", "workflows", "compensation")


def test_the_mapping_names_the_card_folders():
    assert package_dirs() == {
        "canvasflow": ROOT / "canvasflow",
        **{f"canvasflow.{folder}": ROOT / folder for folder in FOLDERS},
    }


def test_every_package_folder_is_declared_and_every_declared_package_exists():
    on_disk = {"canvasflow"}
    for folder in FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join(["canvasflow", folder, *rel]))
    assert set(declared_packages()) == on_disk, "pyproject.toml [tool.setuptools] packages is out of date"
    for package in declared_packages():
        assert (package_folder(package) / "__init__.py").is_file(), package


def test_no_symbolic_links_are_committed():
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True)
    links = [line.split("\t", 1)[1] for line in listed.stdout.splitlines() if line.startswith("120000")]
    assert links == []


def test_tests_import_the_package_as_users_do():
    """No ``pythonpath`` shortcut: ``canvasflow.*`` comes from the installed mapping."""
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "pythonpath" not in pytest_ini


def test_each_module_is_loaded_once_under_its_canvasflow_name():
    """From a neutral directory: every part resolves into its folder, and nothing of the
    repository is importable or imported under a top-level name (no second settings singleton)."""
    probe = (
        "import importlib.util, sys, canvasflow.app, canvasflow.workflows.client;"
        "m = sys.modules; print(m['canvasflow.config.settings'].__file__);"
        "print(m['canvasflow.workers.step'].__file__);"
        f"print([n for n in {FOLDERS!r} if n in sys.modules or importlib.util.find_spec(n)])"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    settings_file, step_file, top_level = done.stdout.splitlines()
    assert settings_file == str(ROOT / "config" / "settings.py")
    assert step_file == str(ROOT / "workers" / "step.py")
    assert top_level == "[]"
