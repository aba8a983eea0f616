"""The client of the state Redis: one server, a Redis Cluster, or a primary behind Sentinel
(``redis+sentinel://``: config/redis_sentinel.py).

``CANVASFLOW_STATE_URL`` (and ``CANVASFLOW_BLOB_URL``) name either one server
(``redis://``, ``rediss://``, ``unix://``) or a Redis Cluster::

    redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]
    rediss+cluster://...                                   (TLS)

The hosts are seed nodes (one is enough; give more so that a client can start while one of
them is down); the client discovers every primary from them. A cluster has one database,
``0``. :func:`state_client` returns a :class:`redis.Redis` or a
:class:`redis.cluster.RedisCluster` for such a URL; everything that opens the state Redis
goes through it.

Why the rest of canvasflow needs no cluster branch: every key of a run shares the hash tag
``{<run id>}`` (``<prefix>:{<run>}:<part>``), so a run's Lua scripts, its ``MULTI``
pipelines and its multi-key commands stay within one slot, and redis-py's cluster client
sends them to the primary holding it. Global keys (heartbeats, the live view of the engines,
the index of active runs, dead letters, sweep locks) are single-key commands or
non-transactional pipelines, which the cluster client splits by node; reading many of them
goes through :func:`get_many`. The broker and the result backend stay plain Redis (or
RabbitMQ): only the run state moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from canvasflow.config.errors import SettingsError
from canvasflow.config.redis_sentinel import host_ports, is_sentinel_url, sentinel_client, sentinel_problem

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SERVER_SCHEMES = ("redis", "rediss", "unix")
URL_FORMS = (
    "redis://host:port/db, rediss://..., unix:///path, redis+cluster://host:port[,host:port...]/0 "
    "or redis+sentinel://host:port[,host:port...]/db?master_name=NAME"
)


def is_cluster_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return bool(url) and _scheme(str(url)) in CLUSTER_SCHEMES


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _seeds(parts: SplitResult) -> list[tuple[str, int]]:
    """The ``host:port`` seed nodes of a cluster URL; ValueError naming what is wrong."""
    return host_ports(parts.netloc.rpartition("@")[2])


def url_problem(url: str) -> str | None:
    """What is wrong with a state Redis URL, in one sentence; None when it is well formed."""
    scheme = _scheme(url)
    if scheme in SERVER_SCHEMES:
        return None
    if is_sentinel_url(url):
        return sentinel_problem(url)
    if scheme not in CLUSTER_SCHEMES:
        return f"{scheme or 'no scheme'}:// is not a Redis URL; use {URL_FORMS}"
    parts = urlsplit(url)
    try:
        _seeds(parts)
    except ValueError as exc:
        return f"a cluster URL names its seed nodes as host:port[,host:port...]: {exc}"
    if parts.path not in ("", "/", "/0"):
        return f"a Redis Cluster has database 0 only (the URL's path is {parts.path!r}): end it with /0"
    if any(db != "0" for db in parse_qs(parts.query).get("db", [])):
        return "a Redis Cluster has database 0 only: drop db= from the URL"
    return None


def state_client(url: str, **options: Any) -> redis.Redis:
    """A client of the state Redis at ``url``: :class:`redis.Redis`, or for a cluster URL a
    :class:`~redis.cluster.RedisCluster` (typed as Redis: it offers the same commands on the
    keys of one slot, which is what canvasflow sends). ``options`` go to the connections.

    A cluster that does not answer raises :class:`redis.ConnectionError` (redis-py's own
    ``RedisClusterException`` is no ``RedisError``, which callers catch)."""
    if is_sentinel_url(url):
        problem = url_problem(url)
        if problem:
            raise SettingsError(f"invalid Redis URL: {problem}")
        try:
            return sentinel_client(url, **options)
        except ValueError as exc:
            raise SettingsError(f"invalid Redis URL: {exc}") from None
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    problem = url_problem(url)
    if problem:
        raise SettingsError(f"invalid Redis URL: {problem}")
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    (host, port), *others = _seeds(parts)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 host keeps its brackets
    netloc = f"{userinfo}@{address}" if userinfo else address
    plain = urlunsplit((CLUSTER_SCHEMES[_scheme(url)], netloc, "/0", parts.query, ""))
    nodes = [ClusterNode(h, p) for h, p in others]
    try:
        client = RedisCluster.from_url(plain, startup_nodes=nodes, **options)
    except RedisClusterException as exc:
        raise redis.ConnectionError(f"Redis Cluster at {host}:{port} does not answer: {exc}") from exc
    return cast(redis.Redis, client)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def get_many(client: redis.Redis, keys: Sequence[str]) -> list[Any]:
    """``GET`` of each key, in order (``None`` for a missing one): one ``MGET`` on a server;
    on a cluster, one per slot (keys of other slots may sit on other primaries)."""
    if not keys:
        return []
    if is_cluster(client):
        return list(cast(RedisCluster, client).mget_nonatomic(list(keys)))
    return list(client.mget(list(keys)))


def run_scripts(client: redis.Redis, script: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
    """A Lua ``script`` run once per ``(keys, args)``, replies in order: in one pipeline on a
    server; on a cluster, one call each (a cluster pipeline runs no scripts)."""
    runner = client.register_script(script)
    if is_cluster(client):
        return [runner(keys=keys, args=args) for keys, args in calls]
    p = client.pipeline(transaction=False)
    for keys, args in calls:
        runner(keys=keys, args=args, client=p)
    return list(p.execute())
