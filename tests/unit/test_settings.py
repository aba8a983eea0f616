"""Settings: defaults, one clear error naming the variable, and password redaction."""

from __future__ import annotations

import pytest

from canvasflow.config.errors import SettingsError
from canvasflow.config.settings import load_settings, redact


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.broker_url == s.result_backend == "redis://127.0.0.1:6379/0"
    assert s.state_url is None and s.redis_state_url == s.result_backend
    assert s.key_prefix == "cf"
    assert s.database_url == "sqlite:///canvasflow.db"
    assert (s.log_format, s.log_level) == ("json", "INFO")
    assert (s.default_queue, s.control_queue) == ("canvasflow", "canvasflow.control")
    assert s.capabilities == ["default", "demo"]
    assert s.workflow_modules == [] and s.capability_modules == {} and s.worker_modules is None
    assert s.prefetch_multiplier == 1
    assert s.visibility_timeout == 3600
    assert s.result_expires == 86_400
    assert s.broker_timeout == 3.0


def test_environment_overrides_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANVASFLOW_PREFETCH_MULTIPLIER", "4")
    clean_env.setenv("CANVASFLOW_CAPABILITIES", '["gpu", "io"]')
    s = load_settings()
    assert s.prefetch_multiplier == 4
    assert s.capabilities == ["gpu", "io"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CANVASFLOW_PREFETCH_MULTIPLIER", "abc"),  # wrong type
        ("CANVASFLOW_PREFETCH_MULTIPLIER", "0"),  # below the minimum
        ("CANVASFLOW_LOG_FORMAT", "xml"),  # not one of the choices
        ("CANVASFLOW_BROKER_TIMEOUT", "soon"),
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message
    assert repr(value) in message  # and shows what it got


def test_redact_hides_passwords() -> None:
    assert redact("redis://:s3cret@db.example:6379/0") == "redis://:***@db.example:6379/0"
    assert redact("redis://alice:s3cret@db.example/2") == "redis://alice:***@db.example/2"
    assert redact("rediss://bob:p%40ss@h:6380/1?ssl_cert_reqs=none") == (
        "rediss://bob:***@h:6380/1?ssl_cert_reqs=none"
    )


def test_redact_leaves_urls_without_password_alone() -> None:
    for url in ("redis://127.0.0.1:6379/0", "redis://alice@h:6379/0", "rediss://h/3?x=1"):
        assert redact(url) == url
