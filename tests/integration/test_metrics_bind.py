"""``canvasflow metrics`` serves this host only unless told otherwise (as ``ui`` and ``flower``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.layout import ROOT

pytestmark = [pytest.mark.redis]


def _serve(*extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "canvasflow.workflows.cli", "metrics", "--port", "0", "--json", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return process, json.loads(line)["url"]


def _outward_address() -> str:
    """An address of this machine that is not loopback (the one a route to elsewhere uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel picks a source address
        return s.getsockname()[0]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_metrics_listen_on_loopback_by_default():
    process, url = _serve()
    try:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"canvasflow_" in response.read()
        outward = _outward_address()
        assert not outward.startswith("127.")
        assert not _answers(outward, port)
    finally:
        process.terminate()
        process.wait(10)


def test_metrics_listen_where_told():
    process, url = _serve("--address", "0.0.0.0")
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert _answers(_outward_address(), port)
    finally:
        process.terminate()
        process.wait(10)
