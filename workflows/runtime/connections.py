"""What a process reads runs through: its settings, the state Redis and the journal's SQL store.

No Celery here: reading a run (``canvasflow status``, ``get_run``, the console's run page) needs
these only, so that it starts without building the Celery app. The runtime
(:class:`~canvasflow.workflows.runtime.context.Runtime`) is these connections plus the app, the
journal's writer and the cache of run graphs.

A process holds one of either, built lazily on first use (a forked worker child builds its
own), from ``config.settings`` only: :func:`connections` answers the process's runtime when one
was built, and a runtime built later takes over the connections a reader opened before it (one
Redis pool and one SQL engine a process).
"""

from __future__ import annotations

import os
from functools import cached_property

import redis

from canvasflow.config.redis_clients import state_client
from canvasflow.config.settings import Settings, get_settings
from canvasflow.workflows.runtime.state import RunState
from canvasflow.workflows.store.sql import SqlRunStore, store_for

# what a runtime takes over from the connections opened before it (the cached properties below)
OPENED = ("redis", "state", "store")


class Connections:
    """The state Redis and the journal of one process, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def redis(self) -> redis.Redis:
        return state_client(
            self.settings.redis_state_url,
            socket_connect_timeout=self.settings.broker_timeout,
            health_check_interval=30,
        )

    @cached_property
    def state(self) -> RunState:
        return RunState(self.redis, self.settings.key_prefix, self.settings.finished_state_ttl)

    @cached_property
    def store(self) -> SqlRunStore:
        return store_for(self.settings.database_url)

    def take_over(self, opened: Connections) -> None:
        """Use the connections ``opened`` has open already (it read with the same settings)."""
        if opened.settings is self.settings:
            for name in OPENED:
                if name in opened.__dict__:  # a cached_property keeps its value in the instance
                    self.__dict__[name] = opened.__dict__[name]


# this process's connections or runtime, by process id (a forked child builds its own)
PROCESS: dict[int, Connections] = {}


def connections() -> Connections:
    """This process's connections: its runtime when one was built, else connections for reading."""
    pid = os.getpid()
    built = PROCESS.get(pid)
    if built is None:
        built = PROCESS[pid] = Connections(get_settings())
    return built
