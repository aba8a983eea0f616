"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright): the
runs list, a failed run's graph coloured failed/compensated, resume with its confirmation,
the run succeeding on the page, a screenshot; and no page without credentials.

A compensated run cannot be resumed (its effects were undone: README, "A resume"), so the
colours are checked on one run that failed and compensated, and the resume on one that failed
before anything completed (nothing to undo, so it ends ``failed`` and is resumable)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from canvasflow.workflows import start
from canvasflow.workflows.runtime.context import runtime
from canvasflow.workflows.views.pictures import STATUS_COLORS
from tests.harness.plugin import ROOT
from tests.integration import console_flows
from tests.integration.console_support import (  # noqa: F401  (fixtures)
    PASSWORD,
    USER,
    _workers_know_console_flows,
    console_fixture,
)

pytestmark = [pytest.mark.redis, pytest.mark.worker]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "console"


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install -y chromium)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def node(page, step_id: str) -> tuple[str, str]:
    """The class and the fill of a step's node in the run's SVG graph."""
    g = page.locator(f'svg.run-graph g.node[data-step="{step_id}"]')
    return g.get_attribute("class"), g.locator("rect").get_attribute("fill")


def test_console_in_a_browser(worker, console, browser):
    flag = f"ui-flag:{uuid.uuid4().hex}"
    runtime().redis.set(flag, "1")
    compensated = start(console_flows.saga.name, {"flag": flag}).wait(60)
    failed = start(console_flows.retry.name, {"flag": flag}).wait(60)
    assert (compensated.status, failed.status) == ("compensated", "failed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import Error as BrowserError

    anonymous = browser.new_context()  # no credentials: Chromium gets a 401 and shows no page
    statuses: list[int] = []
    lost = anonymous.new_page()
    lost.on("response", lambda r: statuses.append(r.status))
    with pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        lost.goto(f"{console}/runs")
    assert statuses == [401]
    assert anonymous.request.get(f"{console}/api/runs").status == 401
    anonymous.close()

    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD}, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    assert page.goto(f"{console}/runs").status == 200
    rows = page.locator("table.runs tr.run")
    listed = {
        rows.nth(i).get_attribute("data-run"): rows.nth(i).get_attribute("data-status")
        for i in range(rows.count())
    }
    assert listed[compensated.id] == "compensated" and listed[failed.id] == "failed"

    page.click(f'a[href="/runs/{compensated.id}"]')
    page.wait_for_selector("svg.run-graph")
    assert node(page, "0.book") == ("node status-compensated", STATUS_COLORS["compensated"])
    assert node(page, "1.book") == ("node status-failed", STATUS_COLORS["failed"])
    assert page.locator("#action-resume").count() == 0
    assert "RuntimeError: charge failed" in page.inner_text("table.steps")
    shot = ARTIFACTS / "run-compensated.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    page.goto(f"{console}/runs")
    page.click(f'a[href="/runs/{failed.id}"]')
    page.wait_for_selector("svg.run-graph")
    assert node(page, "0.book") == ("node status-failed", STATUS_COLORS["failed"])
    assert node(page, "1.book")[0] == "node status-skipped"
    runtime().redis.delete(flag)  # the step succeeds from now on
    page.click("#action-resume")
    page.wait_for_selector("form.confirm")
    assert "Resume run" in page.inner_text("h1")
    page.click("#confirm")
    page.wait_for_selector('#run-status[data-status="succeeded"]', timeout=60_000)  # the live refresh
    assert node(page, "0.book") == ("node status-succeeded", STATUS_COLORS["succeeded"])
    assert node(page, "1.book") == ("node status-succeeded", STATUS_COLORS["succeeded"])
    assert "Resumed" in page.inner_text(".flash")
    # every attempt is kept (canvasflow.history): the first one failed, with its traceback
    tries = page.locator("table.attempts tr.attempt")
    assert [tries.nth(i).get_attribute("class") for i in range(tries.count())] == [
        "attempt status-failed",
        "attempt status-succeeded",
    ]
    assert "raise RuntimeError" in (tries.nth(0).locator("pre").text_content() or "")  # in a closed <details>
    events = page.locator("table.events tr.event td:nth-child(3)").all_inner_texts()
    assert events[0] == "run.created" and events[-1] == "run.succeeded" and "run.resumed" in events
    shot = ARTIFACTS / "run-resumed.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.goto(f"{console}/runs")
    page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
    context.close()
