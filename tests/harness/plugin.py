"""canvasflow's pytest harness, loaded by ``-p tests.harness.plugin`` (pyproject's addopts).

How the session is configured
    The session's ``CANVASFLOW_*`` variables are put in ``os.environ`` by
    ``pytest_load_initial_conftests``. For a ``-p`` plugin that hook runs before any
    conftest.py or test module is imported, so ``config.settings.get_settings()`` (cached)
    and ``config.celery_app.app`` (configured at import) see them the first time they are
    used, in this process and in every worker or Flower subprocess (which inherit the
    environment). That is more robust than patching ``app.conf`` later: some task options,
    e.g. ``queue=get_settings().control_queue``, are fixed at import. As a safety net, if
    something imported the app earlier anyway, the hook clears the settings cache and
    re-applies ``config.celery_app.configure``. The previous environment comes back at exit.

    Set for the session: broker, result backend and state URL (the session's Redis
    database, see :mod:`tests.harness.redis_server`), a unique key prefix, a SQLite file in
    the session's work directory, JSON logs, a visibility timeout of 10 s (a killed
    worker's messages come back quickly) and the workflow modules the workers import.

Fixtures
    ``canvasflow_session``  (session) the :class:`HarnessSession`: env, workdir, Redis target
    ``redis_url``           (session) a Redis URL that answers; fails the test when none can
    ``celery_worker_factory`` (function) ``start_worker(queues, concurrency, pool, hostname,
                            extra_env, ready_timeout) -> WorkerProcess``; stops what it started
    ``worker``              (function) the module's shared default worker, restarted if killed
    ``flower``              (function) a running Flower's base URL
    ``postgres_url``        (session) from :mod:`tests.harness.postgres`, registered here
    ``broker``              (module, parametrized) a :class:`Broker` (``name``, ``url``): the test
                            runs once per selected broker, the session's broker switched to it

The broker dimension
    A module (or test) that uses ``broker`` (e.g. ``pytestmark = pytest.mark.usefixtures("broker")``)
    runs once on each broker named by ``--brokers`` or ``$CANVASFLOW_TEST_BROKERS`` (default
    ``redis,amqp``): Redis is the session's database, RabbitMQ a vhost of the session's own
    (:mod:`tests.harness.rabbitmq`). While a broker is in use, ``CANVASFLOW_BROKER_URL`` in
    os.environ and the app point at it, so the workers started then consume from it; results
    and run state stay in the session's Redis. Where RabbitMQ does not answer and cannot be
    started, its tests fail saying so; leaving ``amqp`` out of the selection is reported in the
    header and the summary. Nothing passes silently.

The state dimension
    ``--state=cluster`` (or ``$CANVASFLOW_TEST_STATE=cluster``) keeps the whole session's run
    state (``CANVASFLOW_STATE_URL``) on a local Redis Cluster of three primaries the session
    starts on first use (:mod:`tests.harness.redis_cluster`); broker, results and journal stay.
    Without it, ``cluster_state`` (:mod:`tests.harness.cluster_state`) does the same for one
    module (tests/integration/test_state_cluster.py). See docs/redis-cluster.md.

Tests marked ``redis`` get ``redis_url`` without asking. When a test fails, the logs of
the workers and Flower it used (the part written during the test) are added to its report.
The work directory (SQLite file, logs) is removed at the end, unless the session failed
after a worker or Flower wrote logs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import kombu.pools
import pytest

from tests.harness.flower import spawn_flower
from tests.harness.rabbitmq import RabbitTarget, RabbitUnavailable, plan_rabbit
from tests.harness.redis_cluster import LocalCluster, plan_cluster
from tests.harness.redis_server import RedisTarget, RedisUnavailable, plan_redis
from tests.harness.workers import DEFAULT_QUEUES, WorkerProcess, spawn_worker
from tests.layout import module_file

# postgres_server / postgres_url for `postgres` tests; redis_cluster / cluster_state (Redis Cluster)
pytest_plugins = ["tests.harness.postgres", "tests.harness.cluster_state"]

ROOT = Path(__file__).resolve().parents[2]
# the demo's modules are imported only where asked for: the tests use them, so the workers load them
WORKFLOW_MODULES = ["canvasflow.workers.demo", "canvasflow.workflows.demo", "tests.integration.flows"]
SESSION = pytest.StashKey["HarnessSession"]()
LOGS = pytest.StashKey[list[tuple[str, Path, int]]]()
SHARED = pytest.StashKey[list["_SharedWorker"]]()
LOG_LINES_SHOWN = 300
BROKERS = ("redis", "amqp")
ENV_BROKERS = "CANVASFLOW_TEST_BROKERS"
BROKER_ENV = "CANVASFLOW_BROKER_URL"
DESELECTED = pytest.StashKey[int]()
STATES = ("redis", "cluster")  # where the session keeps run state (--state / $CANVASFLOW_TEST_STATE)
ENV_STATE = "CANVASFLOW_TEST_STATE"


@dataclass(frozen=True)
class Broker:
    """The broker a ``broker`` test runs on: ``redis`` or ``amqp``, and its URL."""

    name: str
    url: str


@dataclass
class HarnessSession:
    """What this test session set up: its environment, work directory and Redis."""

    workdir: Path
    key_prefix: str
    redis: RedisTarget
    rabbit: RabbitTarget
    env: dict[str, str]
    saved_env: dict[str, str | None] = field(default_factory=dict)
    keep_workdir: bool = False
    cluster: LocalCluster | None = None  # a local Redis Cluster, planned when first needed

    @classmethod
    def open(cls, state: str = "redis") -> HarnessSession:
        token = uuid.uuid4().hex[:10]
        workdir = Path(tempfile.mkdtemp(prefix=f"canvasflow-test-{token}-"))
        key_prefix = f"cftest-{token}"
        target = plan_redis(owner=key_prefix, workdir=workdir)
        # by file, not importlib.util.find_spec: that would import the packages, and so the app
        modules = [m for m in WORKFLOW_MODULES if module_file(m).is_file()]
        env = {
            "CANVASFLOW_BROKER_URL": target.url,
            "CANVASFLOW_RESULT_BACKEND": target.url,
            "CANVASFLOW_STATE_URL": target.url,
            "CANVASFLOW_KEY_PREFIX": key_prefix,
            "CANVASFLOW_DATABASE_URL": f"sqlite:///{workdir / 'canvasflow.db'}",
            "CANVASFLOW_LOG_FORMAT": "json",
            "CANVASFLOW_VISIBILITY_TIMEOUT": "10",
            "CANVASFLOW_UNACKED_RESTORE_INTERVAL": "1",
            "CANVASFLOW_WORKFLOW_MODULES": json.dumps(modules),
        }
        session = cls(workdir, key_prefix, target, plan_rabbit(owner=key_prefix), env)
        if state == "cluster":  # run state on a Redis Cluster; broker and results stay on `target`
            env["CANVASFLOW_STATE_URL"] = session.local_cluster().url
        return session

    def local_cluster(self) -> LocalCluster:
        """The session's Redis Cluster (not started: ``ensure_running()`` does that)."""
        if self.cluster is None:
            self.cluster = plan_cluster(self.workdir / "cluster")
        return self.cluster

    @property
    def state(self) -> str:
        return "cluster" if self.env["CANVASFLOW_STATE_URL"].startswith("redis+cluster") else "redis"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def apply(self) -> None:
        """Put the session's variables in os.environ (and into the app if already built)."""
        self.saved_env = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        _reload_settings()

    def use_broker(self, url: str) -> None:
        """Point os.environ (so workers started from now on) and this process's app at ``url``."""
        os.environ[BROKER_ENV] = url
        _reload_settings()

    def close(self) -> None:
        """Free the Redis database (or stop the server) and the RabbitMQ vhost, restore the
        environment, tidy up."""
        self.redis.close()
        self.rabbit.close()
        if self.cluster is not None:
            self.cluster.stop()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with contextlib.suppress(Exception):  # tidiness only: the restored env may not validate
            _reload_settings()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _reload_settings() -> None:
    """Make already imported settings and app follow os.environ (a no-op before import)."""
    if "canvasflow.config.settings" in sys.modules:
        sys.modules["canvasflow.config.settings"].get_settings.cache_clear()
    if "canvasflow.config.celery_app" in sys.modules:
        module = sys.modules["canvasflow.config.celery_app"]
        before = module.app.conf.broker_url
        module.configure(module.app, module.get_settings())
        if module.app.conf.broker_url != before:  # publish and broadcast through the new broker
            # every pool closed and forgotten (kombu.pools keeps one per URL and would hand
            # a closed one, or one whose connections a test cut, out again)
            kombu.pools.reset()
            module.app._pool = None
            module.app.amqp._producer_pool = None


# ---- hooks ----


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    session = HarnessSession.open(selected_state(early_config))
    session.apply()
    early_config.stash[SESSION] = session
    early_config.add_cleanup(session.close)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--brokers",
        default=None,
        help=f"comma-separated brokers the `broker` tests run on: {', '.join(BROKERS)} "
        f"(default: ${ENV_BROKERS}, else all)",
    )
    parser.addoption(
        "--state",
        dest="canvasflow_state",
        default=None,
        choices=STATES,
        help=f"where runs keep their hot state: redis (the session's database) or cluster (a local "
        f"3-primary Redis Cluster the session starts) (default: ${ENV_STATE}, else redis)",
    )


def selected_state(config: pytest.Config) -> str:
    chosen = getattr(config.known_args_namespace, "canvasflow_state", None)
    raw = chosen or os.environ.get(ENV_STATE) or "redis"
    if raw not in STATES:
        raise pytest.UsageError(f"unknown state {raw!r} in --state/{ENV_STATE}: use {STATES}")
    return str(raw)


def selected_brokers(config: pytest.Config) -> list[str]:
    raw = config.getoption("--brokers") or os.environ.get(ENV_BROKERS) or ",".join(BROKERS)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in BROKERS]
    if unknown or not names:
        raise pytest.UsageError(
            f"unknown broker(s) {unknown or raw!r} in --brokers/{ENV_BROKERS}: use {BROKERS}"
        )
    return list(dict.fromkeys(names))


def _brokers_line(config: pytest.Config) -> str:
    s, chosen = config.stash[SESSION], selected_brokers(config)
    left_out = [b for b in BROKERS if b not in chosen]
    line = f"canvasflow harness: `broker` tests run on {', '.join(chosen)}"
    if "amqp" in chosen:
        line += f" (RabbitMQ {s.rabbit.source}, session vhost {s.rabbit.vhost})"
    if left_out:
        line += f"; NOT on {', '.join(left_out)} (--brokers/{ENV_BROKERS})"
    return line


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[SESSION]
    if s.redis.server:
        how = f"nothing answered at {s.redis.source}: will start {s.redis.server.binary} on first use"
    else:
        how = f"a database claimed on {s.redis.source}"
    lines = [
        f"canvasflow harness: redis {s.redis.url} ({how}), key prefix {s.key_prefix}, workdir {s.workdir}",
        _brokers_line(config),
    ]
    if s.state == "cluster":
        url = s.env["CANVASFLOW_STATE_URL"]
        lines.append(f"canvasflow harness: run state on a local Redis Cluster {url}")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using ``broker`` runs once per broker (``@pytest.mark.brokers("amqp")`` narrows
    the list); those on brokers not selected are deselected, and the summary says so."""
    if "broker" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("brokers")
        names = list(marker.args) if marker else list(BROKERS)
        if not names or set(names) - set(BROKERS):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: brokers{tuple(names)}: use names of {BROKERS}"
            )
        # module scope groups a module's tests by broker: workers restart once per switch
        metafunc.parametrize("broker", names, indirect=True, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = selected_brokers(config)
    keep, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        name = params.params.get("broker") if params is not None else None
        (dropped if name is not None and name not in chosen else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = heaviest_files_first(keep)
    config.stash[DESELECTED] = len(dropped)


# a rough cost per test, by its marks (seconds on a 2-core machine): what orders the files
_COST = (("faults", 30.0), ("flower", 8.0), ("worker", 4.0), ("postgres", 1.0), ("redis", 0.3))


def _cost(item: pytest.Item) -> float:
    return next((cost for mark, cost in _COST if item.get_closest_marker(mark)), 0.02)


def heaviest_files_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """Whole files, the costliest first (their tests keep their order). With ``--dist loadfile
    --no-loadscope-reorder`` (the Makefile's) the processes take the long fault files first and
    end on short unit files, instead of finishing on one long file while the others are idle."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = sorted(files.values(), key=lambda tests: -sum(map(_cost, tests)))
    return [item for tests in order for item in tests]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    s = session.config.stash[SESSION]
    s.keep_workdir = exitstatus != 0 and s.log_dir.is_dir()  # logs to look at after a failure


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if config.stash[SESSION].keep_workdir:
        terminalreporter.write_line(f"canvasflow harness: logs kept in {config.stash[SESSION].log_dir}")
    if len(selected_brokers(config)) < len(BROKERS):
        dropped = config.stash.get(DESELECTED, 0)
        terminalreporter.write_line(f"{_brokers_line(config)}: {dropped} broker test(s) deselected")


def attach_log(item: pytest.Item, title: str, path: Path) -> None:
    """Show ``path`` (from its current end) in ``item``'s report if the test fails."""
    offset = path.stat().st_size if path.exists() else 0
    item.stash.setdefault(LOGS, []).append((title, path, offset))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and LOGS in item.stash:
        for title, path, offset in item.stash[LOGS]:
            with open(path, "rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
            report.sections.append((f"Captured {title} log ({path})", "\n".join(lines)))
        del item.stash[LOGS]  # once per test, at the first failing phase
    return report


# ---- fixtures ----


@pytest.fixture(scope="session")
def canvasflow_session(pytestconfig: pytest.Config) -> HarnessSession:
    """The session's environment, work directory and Redis target."""
    return pytestconfig.stash[SESSION]


@pytest.fixture(scope="session")
def redis_url(canvasflow_session: HarnessSession) -> str:
    """A Redis URL (the session's own database) that answers PING."""
    try:
        url = canvasflow_session.redis.ensure_running()
        if canvasflow_session.state == "cluster":  # --state=cluster: the run state's cluster too
            canvasflow_session.local_cluster().ensure_running()
        return url
    except RedisUnavailable as exc:
        why = str(exc)
    pytest.fail(f"canvasflow tests need Redis: {why}", pytrace=False)


@pytest.fixture(scope="module")
def broker(
    request: pytest.FixtureRequest, redis_url: str, canvasflow_session: HarnessSession
) -> Iterator[Broker]:
    """The broker this test runs on (a parameter: see ``--brokers``); the session uses it until
    the module's tests on it are done, then goes back to Redis."""
    name = str(request.param)
    if name == "redis":
        url = canvasflow_session.env[BROKER_ENV]
    else:
        try:
            url, why = canvasflow_session.rabbit.ensure_running(), ""
        except RabbitUnavailable as exc:
            why = str(exc)
        if why:
            pytest.fail(
                f"canvasflow tests on RabbitMQ need a broker: {why}. Start RabbitMQ, point "
                "$CANVASFLOW_TEST_AMQP_URL at one, or leave amqp out with --brokers=redis "
                "(then the run says so)",
                pytrace=False,
            )
    for shared in request.config.stash.get(SHARED, []):
        shared.stop()  # workers of the previous broker
    canvasflow_session.use_broker(url)
    try:
        yield Broker(name, url)
    finally:
        canvasflow_session.use_broker(canvasflow_session.env[BROKER_ENV])


@pytest.fixture(autouse=True)
def _redis_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("redis"):
        request.getfixturevalue("redis_url")


class StartWorker(Protocol):
    def __call__(
        self,
        queues: Sequence[str] = DEFAULT_QUEUES,
        concurrency: int = 2,
        pool: str = "prefork",
        hostname: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        ready_timeout: float | None = 30.0,
    ) -> WorkerProcess: ...


def _worker_starter(s: HarnessSession, on_spawn: Callable[[WorkerProcess], None]) -> StartWorker:
    def start_worker(
        queues: Sequence[str] = DEFAULT_QUEUES,
        concurrency: int = 2,
        pool: str = "prefork",
        hostname: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        ready_timeout: float | None = 30.0,
    ) -> WorkerProcess:
        """Start a real worker; wait until it answers a ping unless ``ready_timeout`` is None."""
        w = spawn_worker(
            log_dir=s.log_dir,
            cwd=ROOT,
            env={**os.environ, **(extra_env or {})},
            queues=queues,
            concurrency=concurrency,
            pool=pool,
            hostname=hostname,
        )
        on_spawn(w)
        return w if ready_timeout is None else w.wait_ready(ready_timeout)

    return start_worker


@pytest.fixture
def celery_worker_factory(
    request: pytest.FixtureRequest, redis_url: str, canvasflow_session: HarnessSession
) -> Iterator[StartWorker]:
    """``start_worker(...)`` for real worker subprocesses; each is stopped after the test.

    Unless the test also asks for ``worker``, the module's shared worker is stopped first, so
    the workers the test starts are the only ones consuming its queues."""
    if "broker" in request.fixturenames:
        request.getfixturevalue("broker")  # set up first: workers inherit its URL
    if "worker" not in request.fixturenames:
        for shared in request.config.stash.get(SHARED, []):
            shared.stop()
    started: list[WorkerProcess] = []

    def track(w: WorkerProcess) -> None:
        started.append(w)
        attach_log(request.node, f"worker {w.hostname}", w.log_path)

    yield _worker_starter(canvasflow_session, track)
    for w in started:  # warm shutdowns side by side (seconds each), then wait for each
        w.begin_stop()
    for w in reversed(started):
        w.stop()


@dataclass
class _SharedWorker:
    start: StartWorker
    current: WorkerProcess | None = None
    broker_url: str = ""

    def get(self) -> WorkerProcess:
        """The running shared worker; (re)started when dead or on another broker than the session's."""
        if self.current is None or not self.current.alive or self.broker_url != os.environ[BROKER_ENV]:
            self.stop()
            self.broker_url = os.environ[BROKER_ENV]
            self.current = self.start(ready_timeout=None)
            self.current.wait_ready()
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def _module_worker(
    pytestconfig: pytest.Config, redis_url: str, canvasflow_session: HarnessSession
) -> Iterator[_SharedWorker]:
    shared = _SharedWorker(_worker_starter(canvasflow_session, lambda w: None))
    registry = pytestconfig.stash.setdefault(SHARED, [])
    registry.append(shared)
    yield shared
    registry.remove(shared)
    shared.stop()


@pytest.fixture
def worker(request: pytest.FixtureRequest, _module_worker: _SharedWorker) -> WorkerProcess:
    """A default worker (demo, canvasflow and control queues; prefork, concurrency 2),
    shared by the tests of one module and started again when a test has killed it (or a
    ``celery_worker_factory`` test has stopped it)."""
    if "broker" in request.fixturenames:
        request.getfixturevalue("broker")
    w = _module_worker.get()
    attach_log(request.node, f"worker {w.hostname}", w.log_path)
    return w


@pytest.fixture
def flower(
    request: pytest.FixtureRequest, redis_url: str, canvasflow_session: HarnessSession
) -> Iterator[str]:
    """Base URL of a real Flower on the session's broker, receiving events; stopped after."""
    import port_for

    proc = spawn_flower(
        port=port_for.select_random(), log_dir=canvasflow_session.log_dir, cwd=ROOT, env=dict(os.environ)
    )
    attach_log(request.node, "flower", proc.log_path)
    try:
        proc.wait_ready()
        yield proc.url
    finally:
        proc.stop()
