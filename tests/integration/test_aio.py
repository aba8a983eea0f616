"""canvasflow.aio inside a real Starlette app served by uvicorn (a process of its own), under
200 concurrent requests each starting a run and reading it, with a real worker: every run is
started once and succeeds, and the app's event loop keeps answering (its lag measured; the same
load through the blocking client, called on the loop, for contrast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from canvasflow.workflows import get_run
from tests.harness.plugin import ROOT, HarnessSession, attach_log

pytestmark = [pytest.mark.redis, pytest.mark.worker]
CONCURRENT = 200


def call(url: str, method: str = "GET") -> dict:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200
        return json.loads(answer.read())


@pytest.fixture
def app_url(
    request: pytest.FixtureRequest, canvasflow_session: HarnessSession, redis_url: str
) -> Iterator[str]:
    import port_for

    port = port_for.select_random()
    log_path = canvasflow_session.log_dir / f"aio-app-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.integration.aio_app:app", "--port", str(port),
             "--log-level", "warning"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    attach_log(request.node, "aio app", log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(f"{url}/lag")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def _load(url: str, path: str, n: int) -> tuple[list[dict], float]:
    """``n`` POSTs at once (released together); their answers and the seconds they all took."""
    gate = threading.Barrier(n)

    def one(i: int) -> dict:
        gate.wait()
        return call(f"{url}/{path}?n={i}", "POST")

    began = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    return answers, time.monotonic() - began


def _succeeded(ids: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left:
        left = {i for i in left if get_run(i).status != "succeeded"}
        assert time.monotonic() < deadline, (
            f"{len(left)} runs not succeeded, e.g. {get_run(next(iter(left)))}"
        )
        time.sleep(0.5)


def test_200_concurrent_starts_through_aio_keep_the_loop_answering(worker, app_url, capsys):
    call(f"{app_url}/lag", "POST")
    answers, took = _load(app_url, "orders", CONCURRENT)
    lag = call(f"{app_url}/lag")
    ids = [a["id"] for a in answers]
    assert len(set(ids)) == CONCURRENT  # one run per request
    assert all(a["status"] in ("pending", "running", "succeeded") and a["steps"] == 1 for a in answers)
    waited = call(f"{app_url}/wait/{ids[0]}")
    assert waited["status"] == "succeeded" and waited["result"] == 1
    _succeeded(ids)

    call(f"{app_url}/lag", "POST")
    blocking, blocking_took = _load(app_url, "blocking", CONCURRENT)
    blocked = call(f"{app_url}/lag")
    _succeeded([a["id"] for a in blocking])
    with capsys.disabled():
        print(
            f"\naio: {CONCURRENT} starts+reads in {took:.1f}s, "
            f"loop lag median {lag['median'] * 1000:.1f} ms, "
            f"p99 {lag['p99'] * 1000:.0f} ms, max {lag['max'] * 1000:.0f} ms ({lag['threads']} threads); "
            f"blocking client on the loop: {blocking_took:.1f}s, lag p99 {blocked['p99'] * 1000:.0f} ms, "
            f"max {blocked['max'] * 1000:.0f} ms"
        )
    # loose bounds (a loaded 2-core machine): the loop keeps ticking while the pool works ...
    assert lag["samples"] > 50 and lag["p99"] < 1.0, lag
    # ... where the blocking client stalls it for whole starts at a time
    assert blocked["max"] > lag["p99"], (lag, blocked)
