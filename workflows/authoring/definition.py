"""``Workflow``: a named, versioned definition, its input model, and the registry that finds it.

A definition is either ``build`` (validated inputs in, any Celery canvas out) or ``steps``
(the DAG form, see workflows.dag). Inputs are validated by a pydantic model, given as
``inputs=`` or derived from ``build``'s parameters and type hints, before anything is enqueued.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from celery.canvas import Signature
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

import canvasflow.config.celery_app as celery_config
from canvasflow.compensation.registry import registry as compensations
from canvasflow.config.celery_app import current_app
from canvasflow.config.errors import (
    CanvasflowError,
    DefinitionError,
    InputError,
    SettingsError,
    WorkflowNotFound,
)
from canvasflow.config.settings import get_settings
from canvasflow.workers.capabilities import registry as capabilities
from canvasflow.workers.engines import registry as engines
from canvasflow.workflows.authoring.advice import advise
from canvasflow.workflows.authoring.dag import Dag
from canvasflow.workflows.runtime.compiler import compile_canvas
from canvasflow.workflows.runtime.graph import StepGraph
from canvasflow.workflows.runtime.shapes import shapes
from canvasflow.workflows.runtime.wire import WORKFLOW_TASK

# starts a run of a workflow by name: (name, inputs, *, version) -> a handle on the run
Launcher = Callable[..., Any]


class Workflow:
    """A workflow definition; registered by name (and version) on creation."""

    def __init__(
        self,
        name: str,
        version: str,
        build: Callable[..., Any] | None = None,
        *,
        steps: Mapping[str, Any] | None = None,
        inputs: type[BaseModel] | None = None,
        returns: str | None = None,
        description: str = "",
        inflight: str = "wait",
        timeout: float | None = None,
        route: str | None = None,
        register: bool = True,
    ) -> None:
        if (build is None) == (steps is None):
            raise DefinitionError(f"workflow {name}: give exactly one of build= or steps=")
        if inflight not in ("wait", "revoke"):
            raise DefinitionError(f"workflow {name}: inflight must be 'wait' or 'revoke', not {inflight!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise DefinitionError(
                f"workflow {name}: timeout must be a positive number of seconds, not {timeout!r}"
            )
        self.name = name
        self.version = str(version)
        self.inflight = inflight
        self.timeout = float(timeout) if timeout is not None else None
        self.route = route  # the routing strategy of its steps that name none (docs/routing.md)
        self.description = description or (inspect.getdoc(build) if build else "") or ""
        self.build = build
        self.dag = None
        if steps is not None:
            self.dag = Dag(name, steps, returns=returns, input_names=_fields(inputs))
        self.inputs: type[BaseModel] = inputs or _model_from(name, build, self.dag)
        self.registry = registry  # where ``start`` finds its launcher (``add`` rebinds it)
        if build is not None:
            advise(name, build)
        if register:
            registry.add(self)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version!r})"

    # -- inputs and compilation --------------------------------------------------------
    def validate(self, raw: Any) -> dict[str, Any]:
        """Validated, JSON-ready inputs; InputError names every field that is wrong."""
        if isinstance(raw, str | bytes):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise InputError(f"workflow {self.name}: inputs are not JSON ({exc})") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InputError(f"workflow {self.name}: inputs must be a JSON object, got {type(raw).__name__}")
        try:
            model = self.inputs.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(inputs)'}: {e['msg']}" for e in exc.errors()
            )
            raise InputError(f"workflow {self.name}: invalid inputs: {problems}") from None
        values = model.model_dump(mode="json")
        try:
            json.dumps(values)
        except (TypeError, ValueError) as exc:
            raise InputError(f"workflow {self.name}: inputs are not JSON ({exc})") from None
        return values

    def canvas(self, values: dict[str, Any]) -> Any:
        if self.dag is not None:
            return self.dag
        assert self.build is not None
        return self.build(**values)

    def compile(self, values: dict[str, Any]) -> StepGraph:
        """The step graph for validated ``values``."""
        if self.dag is not None:
            graph = self.dag.compile(values, capabilities.queue_of, compensations.compensation_of)
        else:
            canvas, app = self.canvas(values), current_app()
            graph = shapes.compiled(
                self._compiled_with(app),
                canvas,
                lambda c: compile_canvas(c, app, capabilities.queue_of, compensations.compensation_of),
                app.tasks,
            )
        graph.options["inflight"] = self.inflight
        if self.timeout is not None:
            graph.options["timeout"] = self.timeout  # the run fails (and rolls back) after it
        if self.route:
            for node in graph.steps.values():
                if "routing" in node.options:
                    node.options["routing"].setdefault("strategy", self.route)
        return graph

    def _compiled_with(self, app: Any) -> tuple[Any, ...]:
        """What a compilation of this definition's canvas reads besides the canvas (shapes.py)."""
        return (
            self.name,
            self.version,
            id(app),
            celery_config.configurations,
            capabilities.generation,
            engines.generation,
            compensations.generation,
        )

    # -- use --------------------------------------------------------------------------------
    def start(self, **inputs: Any) -> Any:
        """Start a run of this version with ``inputs`` (as ``canvasflow.start``); its ``Run``."""
        return self.registry.launch(self.name, inputs, self.version)

    def s(self, result_as: str | None = None, **inputs: Any) -> Signature:
        """This workflow as one step of another; ``result_as`` names the input that receives
        the previous step's result when chained."""
        return current_app().signature(
            WORKFLOW_TASK,
            kwargs={"workflow": self.name, "inputs": inputs, "result_as": result_as},
        )


def _fields(model: type[BaseModel] | None) -> set[str] | None:
    return None if model is None else set(model.model_fields)


def _model_from(name: str, build: Callable[..., Any] | None, dag: Any = None) -> type[BaseModel]:
    """An input model from ``build``'s parameters (hints become types, defaults stay defaults),
    or, for the DAG form, one required field per ``input("x")`` it uses."""
    fields: dict[str, Any] = {}
    if dag is not None:
        fields = {n: (Any, ...) for n in dag.input_names()}
    if build is not None:
        hints = inspect.get_annotations(build, eval_str=True) if not isinstance(build, type) else {}
        for p in inspect.signature(build).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
    config = ConfigDict(extra="forbid")
    return create_model(
        f"{name.title().replace('.', '_').replace('-', '_')}Inputs", __config__=config, **fields
    )


class WorkflowRegistry:
    """Definitions by name and version; the newest registration of a name is its default."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Workflow]] = {}
        self._loaded = False
        self._lock = threading.RLock()
        self._loading = False
        self._launcher: Launcher | None = None

    def set_launcher(self, launcher: Launcher) -> None:
        """What starts the runs of this registry's workflows (``Workflow.start``). The client sets
        it when imported: it stands above the definitions, which reach it through the registry
        they belong to instead of importing it (procrastinate's ``Task.blueprint``)."""
        self._launcher = launcher

    def launch(self, name: str, inputs: Any, version: str | None = None) -> Any:
        """Start a run of workflow ``name`` through the launcher (see :meth:`set_launcher`)."""
        if self._launcher is None:
            raise CanvasflowError(
                f"workflow {name}: nothing starts runs in this process yet: import canvasflow "
                "(or canvasflow.workflows.client) before Workflow.start"
            )
        return self._launcher(name, inputs, version=version)

    def add(self, wf: Workflow) -> None:
        wf.registry = self
        versions = self._by_name.setdefault(wf.name, {})
        versions.pop(wf.version, None)
        versions[wf.version] = wf

    def names(self) -> list[str]:
        self.load()
        return sorted(self._by_name)

    def versions(self, name: str) -> list[str]:
        self.load()
        return list(self._by_name.get(name, {}))

    def get(self, name: str, version: str | None = None) -> Workflow:
        self.load()
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise WorkflowNotFound(f"no workflow named {name!r} (registered: {known})")
        if version is None:
            return list(versions.values())[-1]
        if version not in versions:
            raise WorkflowNotFound(
                f"workflow {name!r} has no version {version!r} (registered: {', '.join(versions)})"
            )
        return versions[version]

    def load(self) -> None:
        """Import the modules named in CANVASFLOW_WORKFLOW_MODULES (once; threads starting runs
        at the same time wait for it: a module half imported registers tasks as they read)."""
        if self._loaded:
            return
        with self._lock:  # re-entrant: a module being imported may look a workflow up
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for module in get_settings().workflow_modules:
                    _import_workflow_module(module)
                self._loaded = True
            finally:
                self._loading = False


def _import_workflow_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not exc.name or not module.startswith(exc.name):
            raise _broken(module, exc) from exc  # the module is there; something it imports is not
        raise SettingsError(
            f"workflow module {module!r} (CANVASFLOW_WORKFLOW_MODULES or --workflows) is not "
            "importable: run from the directory that holds it (the working directory is on "
            "sys.path) or put it on PYTHONPATH"
        ) from None
    except SettingsError:
        raise
    except Exception as exc:
        raise _broken(module, exc) from exc


def _broken(module: str, exc: BaseException) -> SettingsError:
    return SettingsError(
        f"workflow module {module!r} named in CANVASFLOW_WORKFLOW_MODULES (or --workflows) failed to "
        f"import: {type(exc).__name__}: {exc}; fix the module (--debug shows the traceback)"
    )


registry = WorkflowRegistry()
