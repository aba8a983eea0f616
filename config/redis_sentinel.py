"""The state Redis behind Redis Sentinel: a URL naming the sentinels, a client that follows the primary.

Two spellings name the same thing::

    redis+sentinel://[user:password@]host:port[,host:port...][/db][?master_name=NAME]
    sentinel://host:port[;sentinel://host:port...][/db]        (Celery's, for broker and results)

The hosts are the sentinels (give all of them: a client asks the first one that answers which
server is the primary). ``master_name`` is the name the sentinels monitor; without it in the URL,
``CANVASFLOW_SENTINEL_MASTER`` (``Settings.redis_state_url`` adds it). A password in the URL is
the primary's (``requirepass``), not the sentinels'.

:func:`sentinel_client` returns a :class:`redis.Redis` whose connections ask the sentinels for
the primary each time they connect: after a failover the first command on a dropped connection
fails with a connection error (callers already treat one as an outage), the next one reaches the
new primary. Writes the old primary took but had not replicated are gone; the journal rebuilds
what a run needs from them (workflows/runs/recovery.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "sentinel")


def is_sentinel_url(url: str | None) -> bool:
    """Whether ``url`` names sentinels (``redis+sentinel://`` or Celery's ``sentinel://``)."""
    return bool(url) and str(url).split("://", 1)[0].lower() in SENTINEL_SCHEMES


def host_ports(hosts: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` (an IPv6 host in brackets); ValueError naming what is wrong."""
    out = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item.strip() or '(nothing)'!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return out


def _split(url: str) -> tuple[str, list[tuple[str, int]], int, dict[str, list[str]]]:
    """(userinfo, sentinels, db, query) of a sentinel URL; ValueError naming what is wrong."""
    # Celery's form repeats the scheme per host: sentinel://a:1;sentinel://b:2/0
    hosts_part = url.split("://", 1)[1]
    hosts_part = hosts_part.replace(";sentinel://", ",").replace(";redis+sentinel://", ",")
    parts = urlsplit("x://" + hosts_part)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = host_ports(hosts)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the path names a database number, not {path!r} (the master goes in ?master_name=)")
    return userinfo, sentinels, int(path or 0), parse_qs(parts.query)


def sentinel_problem(url: str) -> str | None:
    """What is wrong with a sentinel URL, in one sentence; None when it is well formed."""
    try:
        _split(url)
    except ValueError as exc:
        return f"a sentinel URL names its sentinels as host:port[,host:port...]: {exc}"
    return None


def master_name(url: str) -> str | None:
    """The ``master_name`` a sentinel URL carries, if any."""
    names = _split(url)[3].get("master_name")
    return names[0] if names else None


def with_master(url: str, name: str) -> str:
    """``url`` as ``redis+sentinel://`` with ``master_name`` set (kept when already there)."""
    userinfo, sentinels, db, query = _split(url)
    query.setdefault("master_name", [name])
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in sentinels)
    auth = f"{userinfo}@" if userinfo else ""
    return f"redis+sentinel://{auth}{hosts}/{db}?{urlencode(query, doseq=True)}"


def sentinel_client(url: str, **options: Any) -> redis.Redis:
    """A client of the primary the sentinels at ``url`` name (``options`` go to its connections)."""
    userinfo, sentinels, db, query = _split(url)
    names = query.get("master_name")
    if not names:
        raise ValueError("a sentinel URL needs ?master_name=NAME (or set CANVASFLOW_SENTINEL_MASTER)")
    user, has_password, password = userinfo.partition(":")
    if user and not has_password:  # redis://password@host, as redis-py reads it
        user, password = "", user
    options = {"db": db, "username": unquote(user) or None, "password": unquote(password) or None, **options}
    timeout = options.get("socket_connect_timeout") or 2.0
    asking = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return Sentinel(sentinels, sentinel_kwargs=asking).master_for(names[0], **options)
