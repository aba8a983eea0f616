"""Fixtures that put the run state on a local Redis Cluster (:mod:`tests.harness.redis_cluster`).

``redis_cluster``  (session) the session's :class:`LocalCluster`, started (3 primaries, every
                   slot covered); the test fails saying why when it cannot start
``cluster_state``  (module) for the module's tests, ``CANVASFLOW_STATE_URL`` names that cluster:
                   in this process (settings and runtime built again) and in every worker
                   started meanwhile (the module's shared worker is restarted on both sides).
                   The broker, the result backend and the journal stay the session's.

With ``--state=cluster`` (or ``CANVASFLOW_TEST_STATE=cluster``) the whole session keeps its
run state on the cluster instead, from the start; ``cluster_state`` then changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness.plugin import SHARED, HarnessSession, _reload_settings
from tests.harness.redis_cluster import LocalCluster
from tests.harness.redis_server import RedisUnavailable

STATE_ENV = "CANVASFLOW_STATE_URL"


@pytest.fixture(scope="session")
def redis_cluster(canvasflow_session: HarnessSession) -> LocalCluster:
    """The session's local Redis Cluster, running."""
    cluster = canvasflow_session.local_cluster()
    try:
        cluster.ensure_running()
    except RedisUnavailable as exc:
        pytest.fail(f"canvasflow's cluster tests need a Redis Cluster: {exc}", pytrace=False)
    return cluster


def _switch_state(config: pytest.Config, url: str) -> None:
    for shared in config.stash.get(SHARED, []):
        shared.stop()  # a worker started before the switch keeps the other state URL
    os.environ[STATE_ENV] = url
    _reload_settings()
    from canvasflow.workflows.runtime.context import reset_runtime

    reset_runtime()  # this process's state client follows the settings


@pytest.fixture(scope="module")
def cluster_state(
    request: pytest.FixtureRequest, redis_url: str, redis_cluster: LocalCluster
) -> Iterator[LocalCluster]:
    """Run state on the cluster for this module's tests; the session's state after."""
    before = os.environ[STATE_ENV]
    _switch_state(request.config, redis_cluster.url)
    try:
        yield redis_cluster
    finally:
        _switch_state(request.config, before)
