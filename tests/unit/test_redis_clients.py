"""The state Redis URL (one server or a cluster) and the Lua scripts a cluster can run."""

from __future__ import annotations

import importlib
import re
import socket
from pathlib import Path

import pytest
import redis

from canvasflow.config.errors import SettingsError
from canvasflow.config.redis_clients import is_cluster_url, state_client, url_problem
from canvasflow.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000/0",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
        "rediss+cluster://user:secret@redis.internal:6380/",
        "redis+cluster://[::1]:7000/0",
        "redis://127.0.0.1:6379/3",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_well_formed_state_urls_are_taken(clean_env: pytest.MonkeyPatch, url: str) -> None:
    clean_env.setenv("CANVASFLOW_STATE_URL", url)
    s = load_settings()
    assert s.redis_state_url == url
    assert is_cluster_url(url) == url.startswith(("redis+cluster", "rediss+cluster"))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://127.0.0.1/0", "'127.0.0.1' is not host:port"),
        ("redis+cluster://h1:7000,h2/0", "'h2' is not host:port"),
        ("redis+cluster://127.0.0.1:7000/2", "database 0 only"),
        ("redis+cluster://127.0.0.1:7000/0?db=3", "database 0 only"),
        ("redis-cluster://127.0.0.1:7000", "redis-cluster:// is not a Redis URL"),
        ("127.0.0.1:6379", "no scheme:// is not a Redis URL"),
        ("redis+sentinel://127.0.0.1/0", "'127.0.0.1' is not host:port"),
        ("redis+sentinel://127.0.0.1:26379/orders", "the master goes in ?master_name="),
    ],
)
def test_a_malformed_state_url_is_refused_naming_the_variable(
    clean_env: pytest.MonkeyPatch, url: str, says: str
) -> None:
    clean_env.setenv("CANVASFLOW_STATE_URL", url)
    with pytest.raises(SettingsError, match="CANVASFLOW_STATE_URL") as caught:
        load_settings()
    assert says in str(caught.value)
    assert url_problem(url) is not None


def test_blob_url_is_checked_the_same_way(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CANVASFLOW_BLOB_URL", "redis+cluster://blobs/0")
    with pytest.raises(SettingsError, match=r"CANVASFLOW_BLOB_URL: .*'blobs' is not host:port"):
        load_settings()


def test_a_server_url_gives_a_plain_client() -> None:
    client = state_client("redis://127.0.0.1:6399/4", socket_connect_timeout=0.5)
    assert type(client) is redis.Redis
    assert client.connection_pool.connection_kwargs["db"] == 4


def test_a_cluster_that_does_not_answer_is_a_connection_error_naming_it() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(redis.ConnectionError, match=f"Redis Cluster at 127.0.0.1:{port} does not answer"):
        state_client(f"redis+cluster://127.0.0.1:{port}/0", socket_connect_timeout=0.5)


# -- every Lua script names its keys in KEYS (on a cluster a script may touch no other key) --------
_CALL = re.compile(r"redis\.call\('(\w+)'\s*(?:,\s*([^,)]+))?")
_KEYLESS = {"PING", "TIME"}
_FOLDERS = ("config", "workers", "workflows", "compensation")


def _modules_with_lua() -> list[str]:
    """Every canvasflow module whose source calls ``redis.call(``: all of them are audited."""
    found = []
    for folder in _FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "redis.call(" in path.read_text():
                found.append("canvasflow." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def _scripts() -> list[tuple[str, str]]:
    """Each script: string constants of those modules, and every ``.lua`` file beside the code."""
    found = []
    for name in _modules_with_lua():
        texts = [(k, v) for k, v in vars(importlib.import_module(name)).items() if isinstance(v, str)]
        found += [(f"{name}.{k}", v) for k, v in texts if "redis.call(" in v]
    for folder in _FOLDERS:
        found += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / folder).rglob("*.lua"))]
    return found


def test_the_audit_finds_the_runtimes_scripts() -> None:
    names = {name.rsplit(".", 1)[0] for name, _ in _scripts() if not name.endswith(".lua")}
    assert {"canvasflow.workflows.runtime.state_scripts", "canvasflow.compensation.claims"} <= names
    assert set(_modules_with_lua()) == names  # no script hides where the audit cannot see it


@pytest.mark.parametrize(("name", "script"), _scripts())
def test_a_script_touches_only_the_keys_it_is_given(name: str, script: str) -> None:
    calls = _CALL.findall(re.sub(r"--[^\n]*", "", script))  # not what the comments say
    assert calls, name
    for command, key in calls:
        if command in _KEYLESS:
            continue
        key = key.strip()
        # ``k`` only as the loop variable over a literal list of KEYS
        given = re.fullmatch(r"KEYS\[\d+\]", key) or (
            key == "k" and re.search(r"ipairs\(\{(KEYS\[\d+\],?\s*)+\}\)", script)
        )
        assert given, f"{name}: {command} on {key!r}, a key not taken from KEYS"
