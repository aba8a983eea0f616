"""``POST /api/runs``: start a run over HTTP, as ``canvasflow start`` does, from a JSON body
``{"workflow", "inputs", "version", "key", "tags", "priority"}``.

The body is checked before anything is enqueued, and every refusal is the CLI's one line
(``workflows/views/errors.py``): unknown workflow (404), invalid inputs or fields (400),
payload too large (413). With a ``key`` the start is idempotent: a second request gets the
first run back with 200 (``created`` False), never a second run; a new run is 201. Two
first requests racing with one key make one run; both may be answered 201.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from canvasflow.config.errors import InputError, PayloadTooLarge
from canvasflow.config.settings import get_settings
from canvasflow.workflows.client import start
from canvasflow.workflows.runtime.context import runtime

FIELDS = ("workflow", "inputs", "version", "key", "tags", "priority")
ENVELOPE_BYTES = 64 * 1024  # room for the fields around the inputs, beyond the inputs' own limit


@dataclass(frozen=True)
class StartRequest:
    workflow: str
    inputs: dict[str, Any]
    version: str | None
    key: str | None
    tags: list[str]
    priority: int | None = None


def body_limit() -> int:
    """The largest body read: inputs of CANVASFLOW_MAX_PAYLOAD_BYTES and their envelope."""
    return get_settings().max_payload_bytes + ENVELOPE_BYTES


def too_large(size: int) -> PayloadTooLarge:
    limit = get_settings().max_payload_bytes
    return PayloadTooLarge(
        f"the request body is over {size} bytes, more than CANVASFLOW_MAX_PAYLOAD_BYTES={limit} of inputs "
        "allow: pass large values by reference (key = canvasflow.blobs.put(data); canvasflow.blobs.get(key))"
    )


def parse(raw: bytes) -> StartRequest:
    """The start's fields from a JSON body; InputError naming what is wrong."""
    try:
        fields = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"the body is not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise InputError(f"the body must be a JSON object with the fields {', '.join(FIELDS)}")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}: the fields are {', '.join(FIELDS)}")
    workflow = fields.get("workflow")
    if not isinstance(workflow, str) or not workflow.strip():
        raise InputError('give the workflow\'s name: {"workflow": "..."} (see `canvasflow workflows`)')
    inputs = fields.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise InputError(f"workflow {workflow}: inputs must be a JSON object, got {type(inputs).__name__}")
    version = fields.get("version")
    if version is not None and not isinstance(version, str | int):
        raise InputError(f"version must be a string, got {version!r}")
    tags = fields.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InputError(f"tags must be a list of strings, got {tags!r}")
    key, priority = fields.get("key"), fields.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InputError(f"priority must be a whole number from 0 to 9, got {priority!r}")
    return StartRequest(workflow, inputs, None if version is None else str(version), key, tags, priority)


def launch(request: StartRequest) -> tuple[str, bool]:
    """Start the run (``canvasflow.start``): its id, and whether this request created it."""
    held = runtime().store.run_by_key(request.key) if isinstance(request.key, str) else None
    run = start(
        request.workflow,
        request.inputs,
        version=request.version,
        key=request.key,
        tags=request.tags,
        priority=request.priority,
    )
    return run.id, held is None or held.id != run.id
