"""``canvasflow ui`` (the web console) and ``canvasflow flower`` (Flower with auth and state).

Both refuse to listen beyond localhost without credentials, saying which settings to give.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import canvasflow.app  # noqa: F401  (the composition root: this command runs in a composed process)
from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import get_settings
from canvasflow.workflows.authoring.definition import registry
from canvasflow.workflows.cli._common import AddCommand
from canvasflow.workflows.console.credentials import Credentials, check_exposure, is_loopback


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the console with uvicorn until interrupted."""
    settings = get_settings()
    host = args.host or settings.ui_host
    port = args.port or settings.ui_port
    check_exposure(host, Credentials.from_settings(settings))
    try:
        import uvicorn

        # the ui extra (uvicorn, starlette, jinja2): imported when the console is served
        from canvasflow.workflows.console.app import create_app
    except ModuleNotFoundError as exc:
        raise SettingsError(f"the console needs {exc.name}: pip install 'canvasflow[ui]'") from None
    registry.load()  # resume checks the run's workflow version against the definitions
    app = create_app(settings)
    if args.json:
        print(json.dumps({"url": f"http://{host}:{port}/runs"}), flush=True)
    else:
        print(f"canvasflow console on http://{host}:{port}/runs", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


def flower_command(settings: Any, host: str, port: int, app: str) -> tuple[list[str], dict[str, str]]:
    """The ``celery flower`` command line and the environment it needs; SettingsError for an
    unauthenticated Flower beyond localhost or malformed credentials."""
    auth = (settings.flower_basic_auth or "").strip()
    entries = [e.strip() for e in auth.split(",") if e.strip()]
    if any(not all(e.partition(":")[::2]) for e in entries):
        raise SettingsError("CANVASFLOW_FLOWER_BASIC_AUTH must be user:password[,user:password]")
    if not entries and not is_loopback(host):
        raise SettingsError(
            f"refusing to serve Flower on {host} without authentication: set CANVASFLOW_FLOWER_BASIC_AUTH="
            "user:password, or bind it to 127.0.0.1 (--host)"
        )
    Path(settings.flower_db).parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "flower",
        f"--address={host}",
        f"--port={port}",
        "--persistent=True",
        f"--db={settings.flower_db}",
        "--state_save_interval=60000",  # ms: the state is saved every minute, and at exit
    ]
    env = {"FLOWER_BASIC_AUTH": ",".join(entries)} if entries else {"FLOWER_UNAUTHENTICATED_API": "true"}
    return cmd, env


def cmd_flower(args: argparse.Namespace) -> int:
    cmd, env = flower_command(get_settings(), args.host, args.port, args.app or "canvasflow.app")
    if args.json:
        shown = {k: ("***" if k == "FLOWER_BASIC_AUTH" else v) for k, v in env.items()}
        print(json.dumps({"command": cmd, "env": shown}))
        return 0
    sys.stdout.flush()
    os.execve(cmd[0], cmd, {**os.environ, **env})
    return 0  # pragma: no cover


def configure_parsers(add: AddCommand) -> None:
    """``ui`` and ``flower``."""
    sp = add("ui", cmd_ui)
    sp.add_argument("--host", help="address to bind (default CANVASFLOW_UI_HOST, 127.0.0.1)")
    sp.add_argument("--port", type=int, help="port (default CANVASFLOW_UI_PORT, 8077)")
    sp = add("flower", cmd_flower)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=5555, help="port (default 5555)")
