"""The web console over plain HTTP: auth, the pages and the JSON API against real runs, actions
that are refused (nothing changes) and accepted, paging and filters."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from celery import chain

from canvasflow.workers.demo import add
from canvasflow.workflows import Workflow, cancel, get_run, sleep, start
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.runtime.context import runtime
from tests.integration import console_flows
from tests.integration.console_support import (  # noqa: F401  (fixtures)
    PASSWORD,
    TOKEN,
    USER,
    _workers_know_console_flows,
    basic,
    console_fixture,
    http,
)

pytestmark = [pytest.mark.redis, pytest.mark.worker]
AUTH = basic()
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def flagged() -> str:
    flag = f"ui-flag:{uuid.uuid4().hex}"
    runtime().redis.set(flag, "1")
    return flag


def wait_status(run_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while get_run(run_id).status != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {get_run(run_id).status}, not {wanted}"
        time.sleep(0.2)


def test_credentials_are_required_and_basic_auth_or_token_accepted(console):
    refused = http(f"{console}/runs")
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert http(f"{console}/api/runs").status == 401
    assert http(f"{console}/runs", headers=basic(USER, PASSWORD + "x")).status == 401
    assert http(f"{console}/runs", headers={"Authorization": "Bearer wrong"}).status == 401
    page = http(f"{console}/runs", headers=AUTH)
    assert page.status == 200 and "<h1>Runs</h1>" in page.body
    assert http(f"{console}/api/runs", headers=BEARER).status == 200
    assert http(f"{console}/healthz").status == 200  # probes need no credentials


def test_a_compensated_run_page_and_api_match_the_cli(worker, console, capsys):
    record = start(console_flows.saga.name, {"flag": flagged()}).wait(60)
    assert record.status == "compensated"
    api = http(f"{console}/api/runs/{record.id}", headers=BEARER)
    assert api.status == 200
    assert main(["status", record.id, "--json"]) == 0
    assert api.json() == json.loads(capsys.readouterr().out)  # the same data as the CLI's --json
    assert api.json()["tree"] == {
        "kind": "chain",
        "children": [{"kind": "step", "step_id": "0.book"}, {"kind": "step", "step_id": "1.book"}],
    }
    page = http(f"{console}/runs/{record.id}", headers=AUTH)
    assert page.status == 200
    nodes = dict(re.findall(r'data-step="([^"]+)" data-status="([^"]+)"', page.body.split("</svg>")[0]))
    assert nodes == {"0.book": "compensated", "1.book": "failed"}
    assert "RuntimeError: charge failed" in page.body
    traceback = page.body.split("<summary>traceback</summary>", 1)[1].split("</pre>", 1)[0]
    assert "console_flows.py" in traceback and "raise RuntimeError" in traceback  # where it failed
    first = record.step("0.book")
    assert f'href="http://flower.example:5555/task/{first.task_id}"' in page.body
    assert first.task_id == f"{record.id}-0.book-g1"  # Flower shows the run and the step in the id
    # 1.book runs fused into 0.book's delivery (one worker, one queue): its link is its own task
    assert f'href="http://flower.example:5555/task/{record.id}-1.book-g1"' in page.body
    assert record.step("1.book").task_id == f"{record.id}-1.book-g1"
    assert 'id="action-resume"' not in page.body  # a compensated run is not resumable
    events = http(f"{console}/api/runs/{record.id}/events", headers=BEARER).json()
    assert main(["history", record.id, "--json"]) == 0
    assert events == json.loads(capsys.readouterr().out)  # the same as `canvasflow history --json`
    assert events[0]["event"] == "run.created" and events[-1]["event"] == "run.compensated"
    assert main(["status", record.id]) == 0
    text = capsys.readouterr().out
    assert "chain (2 parts)" in text and "comp=compensated" in text and "error: RuntimeError" in text


def test_an_unknown_run_is_404_as_a_page_and_as_json(console):
    page = http(f"{console}/runs/no-such-run", headers=AUTH)
    assert page.status == 404 and "no-such-run" in page.body and "RunNotFound" in page.body
    api = http(f"{console}/api/runs/no-such-run", headers=BEARER)
    assert api.status == 404 and api.json()["type"] == "RunNotFound"
    assert http(f"{console}/runs/no-such-run/resume", headers=AUTH).status == 404


def _token(console: str, run_id: str, action: str) -> str:
    page = http(f"{console}/runs/{run_id}/{action}", headers=AUTH)
    assert page.status == 200, page.body
    found = re.search(r'name="token" value="([0-9a-f]+)"', page.body)
    assert found, page.body
    return found.group(1)


def _post_form(console: str, path: str, fields: dict[str, str], origin: str | None = None) -> object:
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded", "Origin": origin or console}
    return http(f"{console}{path}", "POST", urlencode(fields).encode(), headers)


def test_refused_actions_change_nothing_and_an_accepted_one_resumes(worker, console):
    flag = flagged()
    record = start(console_flows.retry.name, {"flag": flag}).wait(60)
    assert record.status == "failed"
    events = len(runtime().store.events(record.id))
    token = _token(console, record.id, "signal")
    bad = _post_form(
        console, f"/runs/{record.id}/signal", {"token": token, "name": "go", "payload": "{not json"}
    )
    assert bad.status == 400 and "not JSON" in bad.body
    resume = _token(console, record.id, "resume")
    assert _post_form(console, f"/runs/{record.id}/resume", {}).status == 403  # no token
    evil = _post_form(console, f"/runs/{record.id}/resume", {"token": resume}, origin="http://evil.example")
    assert evil.status == 403 and "evil.example" in evil.body
    wrong = _post_form(console, f"/runs/{record.id}/cancel", {"token": resume})  # another action's token
    assert wrong.status == 403
    form_api = http(f"{console}/api/runs/{record.id}/resume", "POST", b"x=1", {**BEARER})
    assert form_api.status == 415
    assert get_run(record.id).status == "failed"
    assert len(runtime().store.events(record.id)) == events  # nothing happened
    runtime().redis.delete(flag)
    done = http(
        f"{console}/api/runs/{record.id}/resume",
        "POST",
        b"{}",
        {**BEARER, "Content-Type": "application/json"},
    )
    assert done.status == 200 and done.json()["id"] == record.id
    wait_status(record.id, "succeeded")
    again = http(
        f"{console}/api/runs/{record.id}/resume",
        "POST",
        b"{}",
        {**BEARER, "Content-Type": "application/json"},
    )
    assert again.status == 409 and again.json()["type"] == "ResumeRefused"


def test_runs_list_filters_by_workflow_status_and_time_and_pages(worker, console):
    since = datetime.now(UTC).isoformat()
    flag = flagged()
    failed = start(console_flows.retry.name, {"flag": flag}).wait(60)
    runtime().redis.delete(flag)
    ok = [start(console_flows.retry.name, {"flag": ""}).wait(60) for _ in range(2)]
    assert failed.status == "failed" and [r.status for r in ok] == ["succeeded"] * 2
    query = {"workflow": console_flows.retry.name, "since": since}
    first = http(f"{console}/api/runs?{urlencode(query)}", headers=BEARER)
    assert [r["id"] for r in first.json()] == [ok[1].id, ok[0].id]  # newest first, 2 a page
    second = http(
        f"{console}/api/runs?{urlencode({**query, 'before': first.headers['x-next-before']})}", headers=BEARER
    )
    assert [r["id"] for r in second.json()] == [failed.id] and "x-next-before" not in second.headers
    page = http(f"{console}/runs?{urlencode(query)}", headers=AUTH)
    assert re.findall(r'<tr class="run" data-run="([^"]+)"', page.body) == [ok[1].id, ok[0].id]
    older = re.search(r'class="next" href="([^"]+)"', page.body)
    assert older, "the first page links to the older runs"
    rest = http(f"{console}{older.group(1).replace('&amp;', '&')}", headers=AUTH)
    assert re.findall(r'<tr class="run" data-run="([^"]+)"', rest.body) == [failed.id]
    only_failed = http(f"{console}/api/runs?{urlencode({**query, 'status': 'failed'})}", headers=BEARER)
    assert [r["id"] for r in only_failed.json()] == [failed.id]
    assert http(f"{console}/api/runs?{urlencode({'since': 'yesterday'})}", headers=BEARER).status == 400
    assert http(f"{console}/api/runs?{urlencode({'until': '2000-01-01'})}", headers=BEARER).json() == []


def test_child_runs_are_linked_both_ways(worker, console):
    parent = start("tests.parent").wait(60)
    assert parent.status == "succeeded"
    (child,) = runtime().store.children(parent.id)
    page = http(f"{console}/runs/{parent.id}", headers=AUTH)
    assert f'href="/runs/{child.id}"' in page.body and "Child runs" in page.body
    back = http(f"{console}/runs/{child.id}", headers=AUTH)
    assert f'href="/runs/{parent.id}"' in back.body
    nodes = dict(re.findall(r'data-step="([^"]+)" data-status="([^"]+)"', page.body.split("</svg>")[0]))
    assert set(nodes.values()) == {"succeeded"} and len(nodes) == len(parent.steps)


def test_a_sleeping_run_page_and_api_say_when_it_wakes(worker, console):
    wf = Workflow(
        f"t.console.sleep.{uuid.uuid4().hex[:8]}", "1", build=lambda: chain(add.s(1, 1), sleep(60), add.s(1))
    )
    run = start(wf.name)
    wait_status(run.id, "waiting", timeout=30)
    due = get_run(run.id).step("1.sleep").wakes_at
    page = http(f"{console}/runs/{run.id}", headers=AUTH)
    assert page.status == 200
    assert f"wakes {due.strftime('%Y-%m-%d %H:%M:%S')} UTC" in page.body
    api = http(f"{console}/api/runs/{run.id}", headers=BEARER).json()
    assert {s["step_id"]: s["wakes_at"] for s in api["steps"]}["1.sleep"] == due.isoformat()
    cancel(run.id)
