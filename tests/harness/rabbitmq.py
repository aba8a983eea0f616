"""The RabbitMQ a test session uses: an existing broker with a virtual host of the session's own.

Where: ``$CANVASFLOW_TEST_AMQP_URL``, else ``amqp://guest:guest@127.0.0.1:5672//``. When it
does not answer and the host is local, ``rabbitmq-server -detached`` is tried (when the binary
exists); a broker started that way is left running, as a system service would be.

Isolation: the session creates the vhost ``cftest-<token>`` (``rabbitmqctl add_vhost`` and
``set_permissions`` for the URL's user, else the management API on port 15672), so parallel
sessions never share a queue, and deletes it at the end, with every queue in it. The vhost's
description names the session's host and pid; a later session deletes the ``cftest-`` vhosts
of sessions on this host whose process is gone (killed before it could clean up).

Nothing here skips: when RabbitMQ does not answer and cannot be started, or no vhost can be
made, :class:`RabbitUnavailable` says why and the harness fails the tests that need it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from kombu import Connection

ENV_URL = "CANVASFLOW_TEST_AMQP_URL"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
VHOST_PREFIX = "cftest-"
MANAGEMENT_PORT = 15672


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ answers, none could be started, or no vhost could be made for the session."""


def with_vhost(url: str, vhost: str) -> str:
    """``url`` (auth, host and port kept) on virtual host ``vhost``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe=""), query=""))


def answers(url: str, timeout: float = 2.0) -> str | None:
    """None when a broker at ``url`` accepts a connection within ``timeout``; else why not."""
    try:
        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        return None
    except Exception as exc:  # socket, auth and AMQP errors alike
        return f"{exc.__class__.__name__}: {exc}"


def _run(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class RabbitTarget:
    """The session's RabbitMQ: ``source`` (where it answers) and its own ``vhost`` there."""

    source: str
    vhost: str
    created: bool = False
    started_server: bool = False
    how: str = ""  # "rabbitmqctl" or "management API": how the vhost was made
    failure: str = ""  # why the first attempt failed: later ones say it again at once

    @property
    def url(self) -> str:
        return with_vhost(self.source, self.vhost)

    def ensure_running(self) -> str:
        """The session vhost's URL, starting RabbitMQ and creating the vhost on first use."""
        if self.created:
            return self.url
        if self.failure:
            raise RabbitUnavailable(self.failure)
        why = answers(self.source)
        if why is not None:
            why = self._start_server(why)
        if why is not None:
            self.failure = f"RabbitMQ at {self.source} does not answer ({why})"
            raise RabbitUnavailable(self.failure)
        try:
            self._add_vhost()
        except RabbitUnavailable as exc:
            self.failure = str(exc)
            raise
        self.created = True
        why = answers(self.url)
        if why is not None:
            raise RabbitUnavailable(f"vhost {self.vhost} was created but {self.url} refuses ({why})")
        return self.url

    def close(self) -> None:
        """Delete the session's vhost (and so every queue and exchange in it)."""
        if not self.created:
            return
        with contextlib.suppress(Exception):
            if self.how == "rabbitmqctl":
                _run(["rabbitmqctl", "-q", "delete_vhost", self.vhost])
            else:
                self._management("DELETE", f"/api/vhosts/{quote(self.vhost, safe='')}")
        self.created = False

    # -- helpers --

    def _start_server(self, why: str) -> str | None:
        """Try ``rabbitmq-server -detached`` for a local URL; None once it answers, else why not."""
        host = urlsplit(self.source).hostname or ""
        binary = shutil.which("rabbitmq-server")
        if host not in LOCAL_HOSTS:
            return f"{why}; not local, so not started"
        if binary is None:
            return f"{why}; no rabbitmq-server binary on PATH to start one"
        started = _run([binary, "-detached"], timeout=30)
        self.started_server = True
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = answers(self.source, 1.0)
            if now is None:
                return None
            time.sleep(1.0)
        output = (started.stdout + started.stderr).strip().splitlines()[-3:]
        return (
            f"{why}; started {binary} -detached (exit {started.returncode}: {' | '.join(output)}) "
            "but it did not answer within 60 s"
        )

    def _add_vhost(self) -> None:
        user = unquote(urlsplit(self.source).username or "guest")
        problems = []
        if shutil.which("rabbitmqctl"):
            _delete_abandoned_vhosts()
            made = _run(["rabbitmqctl", "-q", "add_vhost", self.vhost, "--description", _owner()])
            if made.returncode == 0:
                perms = _run(
                    ["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, user, ".*", ".*", ".*"]
                )
                if perms.returncode == 0:
                    self.how = "rabbitmqctl"
                    return
                made = perms
            problems.append(f"rabbitmqctl: {(made.stderr or made.stdout).strip().splitlines()[-1:]}")
        else:
            problems.append("rabbitmqctl: not on PATH")
        try:
            vhost = quote(self.vhost, safe="")
            self._management("PUT", f"/api/vhosts/{vhost}", {"description": _owner()})
            body = {"configure": ".*", "write": ".*", "read": ".*"}
            self._management("PUT", f"/api/permissions/{vhost}/{quote(user, safe='')}", body)
            self.how = "management API"
            return
        except Exception as exc:
            problems.append(f"management API: {exc.__class__.__name__}: {exc}")
        raise RabbitUnavailable(
            f"could not create the session's vhost {self.vhost} on {self.source} "
            f"({'; '.join(problems)}): run the tests as a user allowed to use rabbitmqctl, "
            "or enable the management plugin (rabbitmq-plugins enable rabbitmq_management)"
        )

    def _management(self, method: str, path: str, body: dict[str, str] | None = None) -> None:
        parts = urlsplit(self.source)
        auth = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}"
        request = urllib.request.Request(
            f"http://{parts.hostname}:{MANAGEMENT_PORT}{path}",
            data=json.dumps(body or {}).encode(),
            method=method,
            headers={
                "content-type": "application/json",
                "authorization": "Basic " + base64.b64encode(auth.encode()).decode(),
            },
        )
        with urllib.request.urlopen(request, timeout=5):
            pass


def _owner() -> str:
    return f"canvasflow test session host={socket.gethostname()} pid={os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_abandoned_vhosts() -> None:
    """Delete the test vhosts of sessions on this host whose process is gone."""
    listed = _run(["rabbitmqctl", "-q", "list_vhosts", "name", "description"])
    for line in listed.stdout.splitlines():
        name, _, description = line.partition("\t")
        fields = dict(f.split("=", 1) for f in description.split() if "=" in f)
        if (
            name.startswith(VHOST_PREFIX)
            and fields.get("host") == socket.gethostname()
            and fields.get("pid", "").isdigit()
            and not _pid_alive(int(fields["pid"]))
        ):
            _run(["rabbitmqctl", "-q", "delete_vhost", name])


def plan_rabbit(owner: str) -> RabbitTarget:
    """The target for session ``owner`` (its vhost is named after it); nothing is contacted yet."""
    return RabbitTarget(os.environ.get(ENV_URL, DEFAULT_URL), vhost=owner)
