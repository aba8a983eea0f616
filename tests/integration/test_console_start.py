"""POST /api/runs on a real ``canvasflow ui`` with a real worker: a run started over HTTP (curl
as the README shows it, and urllib), idempotent by key, and every refusal a 4xx carrying the
CLI's own one-line message."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from canvasflow.config.settings import get_settings
from canvasflow.workflows import get_run, list_runs
from canvasflow.workflows.cli.main import main
from tests.integration import console_flows
from tests.integration.console_support import (  # noqa: F401  (fixtures)
    TOKEN,
    _workers_know_console_flows,
    console_fixture,
    http,
)

pytestmark = [pytest.mark.redis, pytest.mark.worker]
JSON_BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def post(console: str, body: object, headers: dict[str, str] = JSON_BEARER):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http(f"{console}/api/runs", "POST", raw, headers)


def succeeded(run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := get_run(run_id).status) != "succeeded":
        assert status in ("pending", "running") and time.monotonic() < deadline, get_run(run_id)
        time.sleep(0.1)


def cli_error(capsys, *argv: str) -> str:
    """The one line ``canvasflow start`` prints for the same refusal (without ``error: ``)."""
    assert main(["start", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: ") :].strip()


def test_a_run_started_with_curl_as_the_readme_shows_runs_on_a_worker(worker, console):
    body = json.dumps({"workflow": console_flows.saga.name, "inputs": {"flag": f"unset:{uuid.uuid4().hex}"}})
    done = subprocess.run(
        ["curl", "-sS", "-i", "-X", "POST", "-H", f"Authorization: Bearer {TOKEN}",
         "-H", "Content-Type: application/json", "-d", body, f"{console}/api/runs"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    head, _, payload = done.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 201"), done.stdout + done.stderr
    run = json.loads(payload)
    assert f"location: /api/runs/{run['id']}" in head.lower()
    assert run["workflow"] == console_flows.saga.name and run["status"] in ("pending", "running")
    succeeded(run["id"])
    assert [s.status for s in get_run(run["id"]).steps] == ["succeeded", "succeeded"]


def test_a_second_start_with_the_key_gets_the_first_run_back_with_200(worker, console):
    key, tags = f"order-{uuid.uuid4().hex[:8]}", ["http", "tenant:acme"]
    fields = {
        "workflow": console_flows.saga.name,
        "inputs": {"flag": f"unset:{key}"},
        "key": key,
        "tags": tags,
    }
    first = post(console, fields)
    assert first.status == 201, first.body
    again = post(console, {**fields, "inputs": {"flag": "another"}})
    assert again.status == 200 and again.json()["id"] == first.json()["id"]
    assert [r.id for r in list_runs(key=key)] == [first.json()["id"]]  # one run
    assert sorted(get_run(first.json()["id"]).tags) == sorted(tags)
    succeeded(first.json()["id"])


def test_refusals_are_4xx_with_the_clis_message(worker, console, capsys, tmp_path):
    unknown = post(console, {"workflow": "no.such.flow", "inputs": {}})
    assert unknown.status == 404
    assert unknown.json() == {"error": cli_error(capsys, "no.such.flow"), "type": "WorkflowNotFound"}

    invalid = post(console, {"workflow": console_flows.saga.name, "inputs": {"flag": ["not", "text"]}})
    assert invalid.status == 400
    told = cli_error(capsys, console_flows.saga.name, "--input", json.dumps({"flag": ["not", "text"]}))
    assert invalid.json() == {"error": told, "type": "InputError"}

    big = {"flag": "x" * (get_settings().max_payload_bytes + 10)}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    large = post(console, {"workflow": console_flows.saga.name, "inputs": big})
    assert large.status == 413
    told = cli_error(capsys, console_flows.saga.name, "--input", f"@{path}")
    assert large.json() == {"error": told, "type": "PayloadTooLarge"}
    huge = post(console, {"workflow": console_flows.saga.name, "inputs": {"flag": "x" * 2_000_000}})
    assert huge.status == 413 and huge.json()["error"].startswith("the request body is over")

    urgent = post(console, {"workflow": console_flows.saga.name, "inputs": {"flag": "f"}, "priority": 12})
    assert urgent.status == 400
    told = cli_error(capsys, console_flows.saga.name, "--input", '{"flag": "f"}', "--priority", "12")
    assert urgent.json() == {"error": told, "type": "InputError"}

    not_json = post(console, b"{workflow: ")
    assert not_json.status == 400 and not_json.json()["error"].startswith("the body is not JSON")
    unknown_field = post(console, {"workflow": console_flows.saga.name, "colour": "red"})
    assert unknown_field.status == 400 and "unknown field(s) colour" in unknown_field.json()["error"]
    form = post(console, b"workflow=x", {**JSON_BEARER, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    elsewhere = post(
        console, {"workflow": console_flows.saga.name}, {**JSON_BEARER, "Origin": "http://evil.example"}
    )
    assert elsewhere.status == 403
    anonymous = post(console, {"workflow": console_flows.saga.name}, {"Content-Type": "application/json"})
    assert anonymous.status == 401
    assert list_runs(workflow="no.such.flow") == []


def test_the_openapi_document_is_served_behind_the_same_auth(console):
    assert http(f"{console}/api/openapi.json").status == 401
    answer = http(f"{console}/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 200
    doc = answer.json()
    assert doc["openapi"].startswith("3.") and {"get", "post"} <= set(doc["paths"]["/api/runs"])
