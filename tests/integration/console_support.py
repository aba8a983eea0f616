"""What the console tests share: the console process with credentials, the workers knowing
``console_flows``, and an HTTP client that returns 4xx answers instead of raising."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness.console import ConsoleProcess, spawn_console
from tests.harness.plugin import ROOT, HarnessSession, attach_log
from tests.integration import console_flows

USER, PASSWORD, TOKEN = "ops", "s3cret-pw", "tok-123456"
MODULES = "CANVASFLOW_WORKFLOW_MODULES"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as r:
            return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode())


@pytest.fixture(scope="module", autouse=True)
def _workers_know_console_flows() -> Iterator[None]:
    """Workers started in this module (and the console) import ``console_flows`` too."""
    before = os.environ[MODULES]
    os.environ[MODULES] = json.dumps([*json.loads(before), console_flows.MODULE])
    yield
    os.environ[MODULES] = before


@pytest.fixture(name="console")
def console_fixture(
    request: pytest.FixtureRequest, canvasflow_session: HarnessSession, redis_url: str
) -> Iterator[str]:
    """A real ``canvasflow ui`` (basic auth and a token configured; Flower links to a made-up URL)."""
    import port_for

    env = {
        "CANVASFLOW_UI_USERNAME": USER,
        "CANVASFLOW_UI_PASSWORD": PASSWORD,
        "CANVASFLOW_UI_TOKEN": TOKEN,
        "CANVASFLOW_UI_PAGE_SIZE": "2",
        "CANVASFLOW_FLOWER_URL": "http://flower.example:5555",
    }
    proc: ConsoleProcess = spawn_console(
        port=port_for.select_random(), log_dir=canvasflow_session.log_dir, cwd=ROOT, env=env
    )
    attach_log(request.node, "console", proc.log_path)
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.stop()
