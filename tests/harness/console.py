"""The web console for tests: ``canvasflow ui`` as a real subprocess on a free port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConsoleNotReady(RuntimeError):
    """The console died or did not answer /healthz in time (the message carries its log)."""


@dataclass
class ConsoleProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> ConsoleProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConsoleNotReady(f"console exited with {self.process.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r,
            ):
                if r.status == 200:
                    return self
            time.sleep(0.2)
        raise ConsoleNotReady(f"console at {self.url} did not answer in {timeout:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def spawn_console(*, port: int, log_dir: Path, cwd: Path, env: Mapping[str, str]) -> ConsoleProcess:
    """``canvasflow ui --port PORT`` on 127.0.0.1 with ``env``; does not wait for it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"console-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canvasflow.workflows.cli",
                "ui",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return ConsoleProcess(process, f"http://127.0.0.1:{port}", log_path)
