"""docs/API.md documents every setting, and the public names it lists exist."""

from __future__ import annotations

import re
from pathlib import Path

import canvasflow
from canvasflow.config.settings import Settings

API = (Path(__file__).resolve().parents[2] / "docs" / "API.md").read_text()


def test_every_setting_is_in_the_api_reference() -> None:
    missing = [name for name in Settings.model_fields if f"`{name.upper()}`" not in API]
    assert not missing, f"document these settings in docs/API.md: {missing}"


def test_the_names_the_reference_imports_exist() -> None:
    block = API.split("from canvasflow import (", 1)[1].split(")\n```", 1)[0]
    names = [n for n in re.findall(r"\b([A-Za-z_]\w*)\b", re.sub(r"#.*", "", block))]
    assert names and not [n for n in names if not hasattr(canvasflow, n)]
