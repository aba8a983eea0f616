"""The engine registry: which fleets (engines) can serve each capability.

A capability (``ocr``) is what a step needs; an engine (``ocr/gpu``) is one fleet that can
do it, consuming ``cap.<capability>.<engine>``. Engines are declared in code::

    from canvasflow import Engine, register_engine
    register_engine(Engine("gpu", "ocr", priority=10, resources={"gpu": 1}, capacity=4))

or in a JSON or TOML file named by ``CANVASFLOW_ENGINES`` (``{"engines": [{...}, ...]}`` or
``[[engines]]`` tables). Declaring one engine twice with different settings is refused.
"""

from __future__ import annotations

import json
import threading
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from canvasflow.config.errors import DefinitionError, SettingsError
from canvasflow.config.queues import queue_for
from canvasflow.config.settings import get_settings

NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Resource = bool | int | float | str


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Engine:
    """One fleet serving a capability: its priority, the resources it offers, its capacity."""

    name: str = Field(pattern=NAME)
    capability: str = Field(pattern=NAME)
    priority: int = 0
    resources: dict[str, Resource] = Field(default_factory=dict)
    capacity: int = Field(default=1, ge=1)
    # a workflow registered as this engine: its steps run as a child run of that workflow
    workflow: str | None = None

    @property
    def key(self) -> str:
        return f"{self.capability}/{self.name}"

    @property
    def queue(self) -> str:
        return f"{queue_for(self.capability)}.{self.name}"

    def satisfies(self, requires: dict[str, Resource]) -> bool:
        """Numbers are minimums (``gpu=1`` needs at least one), anything else must be equal."""
        for name, wanted in requires.items():
            have = self.resources.get(name)
            if have is None:
                return False
            if _number(wanted) and _number(have):
                if float(have) < float(wanted):
                    return False
            elif have != wanted:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capability": self.capability,
            "priority": self.priority,
            "resources": dict(self.resources),
            "capacity": self.capacity,
            "workflow": self.workflow,
            "queue": self.queue,
        }


def _number(value: Resource) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_FILE = TypeAdapter(list[Engine])


def parse_engines(data: Any, source: str) -> list[Engine]:
    """Engines from decoded JSON/TOML; a SettingsError names each bad field."""
    items = data.get("engines") if isinstance(data, dict) else data
    try:
        return _FILE.validate_python(items)
    except ValidationError as exc:
        problems = [
            f"engines.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        ]
        raise SettingsError(f"{source}: invalid engines: " + "; ".join(problems)) from None


def load_engines_file(path: str) -> list[Engine]:
    """Read ``CANVASFLOW_ENGINES``: a ``.toml`` file, else JSON."""
    source = f"CANVASFLOW_ENGINES={path}"
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read the engines file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(
            f"{source}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}"
        ) from None
    return parse_engines(data, source)


class EngineRegistry:
    """Engines by ``capability/name``; the settings' file is read on first use."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._file_loaded: str | None = None
        self._lock = threading.Lock()
        self._by_cap: dict[str, list[Engine]] = {}
        self.generation = 0  # counts changes: what was compiled before may differ now

    def register(self, engine: Engine) -> Engine:
        known = self._engines.get(engine.key)
        if known is not None and known != engine:
            raise DefinitionError(
                f"engine {engine.key} is declared twice with different settings: "
                f"{known.to_json()} and {engine.to_json()}; declare it once"
            )
        self._engines[engine.key] = engine
        self._by_cap.clear()
        self.generation += 1
        return engine

    def _load(self) -> None:
        path = get_settings().engines
        if path and path != self._file_loaded:
            with self._lock:
                for engine in load_engines_file(path):
                    self.register(engine)
                self._file_loaded = path

    def all(self) -> list[Engine]:
        self._load()
        return sorted(self._engines.values(), key=lambda e: (e.capability, -e.priority, e.name))

    def get(self, key: str) -> Engine | None:
        self._load()
        return self._engines.get(key)

    def of(self, capability: str) -> list[Engine]:
        """The capability's engines, highest priority first."""
        found = self._by_cap.get(capability)
        if found is None:
            found = self._by_cap[capability] = [e for e in self.all() if e.capability == capability]
        return found

    def has(self, capability: str) -> bool:
        return bool(self.of(capability))

    def unregister(self, key: str) -> None:
        """Forget one engine (tests that declare engines in code)."""
        self._engines.pop(key, None)
        self._by_cap.clear()
        self.generation += 1


registry = EngineRegistry()


def register_engine(engine: Engine) -> Engine:
    """Declare an engine in code (idempotent for the same settings)."""
    return registry.register(engine)
