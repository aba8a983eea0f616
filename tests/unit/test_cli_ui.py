"""`canvasflow ui` and `canvasflow flower` refuse to listen beyond localhost without credentials;
the console's credential and origin checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from starlette.requests import Request

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import get_settings, load_settings
from canvasflow.workflows.cli.main import main
from canvasflow.workflows.console.auth import ActionGuard, cross_origin
from canvasflow.workflows.console.credentials import Credentials, check_exposure

UI_VARS = ("UI_USERNAME", "UI_PASSWORD", "UI_TOKEN", "FLOWER_BASIC_AUTH")


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in UI_VARS:
        monkeypatch.delenv(f"CANVASFLOW_{name}", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_console_refuses_a_public_address_without_credentials(settings_env, capsys) -> None:
    assert main(["ui", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the console on 0.0.0.0 without credentials" in err
    assert "CANVASFLOW_UI_USERNAME" in err and "CANVASFLOW_UI_TOKEN" in err
    settings_env.setenv("CANVASFLOW_UI_USERNAME", "ops")  # a user without a password is a mistake
    get_settings.cache_clear()
    assert main(["ui", "--host", "127.0.0.1"]) == 2
    assert "give both CANVASFLOW_UI_USERNAME and CANVASFLOW_UI_PASSWORD" in capsys.readouterr().err


def test_exposure_rules() -> None:
    open_, token = Credentials(), Credentials(token="t")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(host, open_)
    for host in ("0.0.0.0", "10.1.2.3", "::", "example.com"):
        with pytest.raises(SettingsError, match="without credentials"):
            check_exposure(host, open_)
        check_exposure(host, token)
    check_exposure("0.0.0.0", Credentials.from_settings(load_settings(ui_username="a", ui_password="b")))


def test_credentials_accept_basic_and_bearer_only_when_right() -> None:
    creds = Credentials("ops", "pw", "tok")

    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    assert creds.accept(basic("ops:pw")) and creds.accept("Bearer tok") and creds.accept("bearer tok")
    for wrong in (basic("ops:pw2"), basic("op:pw"), basic("ops"), "Basic !!!", "Bearer to", "", "Digest x"):
        assert not creds.accept(wrong), wrong
    assert not Credentials(token="tok").accept(basic("ops:pw"))


def _request(**headers: str) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "console:8077", **headers}.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_same_origin_and_action_tokens() -> None:
    assert cross_origin(_request(origin="http://console:8077")) is None
    assert cross_origin(_request(referer="http://console:8077/runs/x/resume")) is None
    assert cross_origin(_request()) is None  # says nothing: the form token decides
    assert "evil" in (cross_origin(_request(origin="http://evil:8077")) or "")
    assert cross_origin(_request(origin="null")) is not None
    guard = ActionGuard()
    token = guard.token("run1", "resume")
    assert guard.valid("run1", "resume", token)
    assert not guard.valid("run1", "cancel", token) and not guard.valid("run2", "resume", token)
    assert not ActionGuard().valid("run1", "resume", token)  # another console process's secret


def test_flower_command_has_auth_and_persistent_state(settings_env, capsys, tmp_path) -> None:
    assert main(["flower", "--host", "0.0.0.0", "--json"]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["type"] == "SettingsError"
    assert "refusing to serve Flower on 0.0.0.0 without authentication" in refused["error"]
    settings_env.setenv("CANVASFLOW_FLOWER_BASIC_AUTH", "admin:pw,ops:pw2")
    settings_env.setenv("CANVASFLOW_FLOWER_DB", str(tmp_path / "state" / "flower.db"))
    get_settings.cache_clear()
    assert main(["flower", "--host", "0.0.0.0", "--port", "5566", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    cmd = shown["command"]
    assert cmd[1:6] == ["-m", "celery", "-A", "canvasflow.app", "flower"]
    assert {"--address=0.0.0.0", "--port=5566", "--persistent=True", "--state_save_interval=60000"} <= set(
        cmd
    )
    assert f"--db={tmp_path / 'state' / 'flower.db'}" in cmd
    assert shown["env"] == {"FLOWER_BASIC_AUTH": "***"}  # the passwords are not printed
    settings_env.setenv("CANVASFLOW_FLOWER_BASIC_AUTH", "admin")
    get_settings.cache_clear()
    assert main(["flower", "--json"]) == 2
    assert "user:password" in json.loads(capsys.readouterr().out)["error"]
