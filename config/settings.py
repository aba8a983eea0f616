"""Settings read once from the environment (prefix ``CANVASFLOW_``) or a ``.env`` file."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from canvasflow.config.errors import SettingsError
from canvasflow.config.redis_clients import url_problem
from canvasflow.config.redis_sentinel import is_sentinel_url, with_master

ENV_PREFIX = "CANVASFLOW_"


class Settings(BaseSettings):
    """Everything canvasflow can be told from outside; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/0"
    # Redis that holds the hot-path run state (joins, claims); defaults to the result backend.
    state_url: str | None = None
    # Redis Sentinel (docs/brokers.md): the name the sentinels monitor, for sentinel:// broker and
    # result backend URLs and a redis+sentinel:// state or blob URL without ?master_name=
    sentinel_master: str = Field(default="mymaster", min_length=1)
    key_prefix: str = "cf"
    database_url: str = "sqlite:///canvasflow.db"
    # the journal beside an app's tables: table names start with this prefix (canvasflow's own
    # Alembic version table is <prefix>alembic_version); a PostgreSQL schema of its own, if given
    table_prefix: str = Field(default="cf_", pattern=r"^[a-z][a-z0-9_]{0,29}$")
    database_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    default_queue: str = "canvasflow"
    control_queue: str = "canvasflow.control"
    capabilities: list[str] = Field(default_factory=lambda: ["default", "demo"])
    # modules defining workflows: clients and control workers import them (the CLI's --workflows overrides)
    workflow_modules: list[str] = Field(default_factory=list)
    # capability -> the modules declaring its steps: a worker for that capability imports only those
    capability_modules: dict[str, list[str]] = Field(default_factory=dict)
    # what this worker imports besides canvasflow's runtime (`canvasflow worker` sets it); unset: everything
    worker_modules: list[str] | None = None

    prefetch_multiplier: int = Field(default=1, ge=1)
    result_expires: int = Field(default=86_400, ge=60)
    # seconds a finished run's hot state stays in Redis (default RESULT_EXPIRES); the journal keeps it
    state_expires: int | None = Field(default=None, ge=1)
    visibility_timeout: int = Field(default=3_600, ge=1)
    # RabbitMQ: declare canvasflow's queues with x-max-priority (9 covers priorities 0..9); unset: none
    queue_max_priority: int | None = Field(default=None, ge=1, le=255)
    # seconds between a worker's sweeps for messages a dead worker left unacknowledged
    unacked_restore_interval: int = Field(default=10, ge=1)
    # seconds kombu's restore lock outlives a worker killed while holding it (kombu: 300)
    unacked_mutex_expire: int = Field(default=15, ge=1)
    broker_timeout: float = Field(default=3.0, gt=0)
    # seconds a worker process gathers step records before writing them in one transaction
    journal_interval: float = Field(default=0.05, ge=0)
    # a running compensation's lease: gone this many seconds after its process died
    compensation_lease_ttl: float = Field(default=10.0, ge=1)
    # a compensation published but not picked up after this many seconds is published again
    compensation_redispatch_after: float = Field(default=60.0, ge=1)
    # deliveries of one compensation attempt interrupted by crashes before it counts as failed
    compensation_max_deliveries: int = Field(default=5, ge=1)
    # deliveries of a step in a row that died running it (its process killed) before it fails
    step_max_crashes: int = Field(default=5, ge=1)
    # journal records a worker process holds while the database is unreachable; past it, steps wait
    journal_max_pending: int = Field(default=100_000, ge=100)
    journal_retry_max: float = Field(default=10.0, gt=0)  # longest pause between journal retries
    # liveness: each worker node writes a heartbeat every interval, kept for ttl seconds; a
    # whole worker that died is noticed after ttl, and its steps run again about an interval later
    heartbeat_interval: float = Field(default=2.0, gt=0)
    heartbeat_ttl: int = Field(default=8, ge=2)
    # the recovery sweep (control workers): re-dispatch lost steps, rebuild lost state, reconcile SQL
    sweep_interval: float = Field(default=10.0, gt=0)
    queued_grace: int = Field(default=60, ge=1)  # a queued step with no message is lost after this
    stalled_after: int = Field(default=300, ge=1)  # no progress for this long: `runs --stalled`, resume
    # durable timers (sleep steps): the control workers' timer service looks for due timers this
    # often, waking at most timer_batch of them per look; clock_offset (seconds) moves this
    # deployment's clock forward for timers only: a fake clock for tests, leave it 0 in production
    timer_interval: float = Field(default=0.2, gt=0)
    timer_batch: int = Field(default=500, ge=1)
    clock_offset: float = 0.0
    # seconds a starting worker waits between attempts to reach its journal database
    startup_retry: float = Field(default=5.0, gt=0)

    # the largest JSON inputs, step arguments or result canvasflow carries; larger: canvasflow.blobs
    max_payload_bytes: int = Field(default=1_048_576, ge=1024)
    # malformed messages kept in the dead-letter list (the oldest drop off)
    deadletter_max: int = Field(default=1_000, ge=1)
    # seconds a blob (canvasflow.blobs) is kept; where: blob_url, else the state Redis
    blob_ttl: int = Field(default=7 * 86_400, ge=60)
    blob_url: str | None = None
    # message signing (Celery's auth serializer; the [signing] extra): all three, or none
    security_key: str | None = None
    security_certificate: str | None = None
    security_cert_store: str | None = None

    @property
    def finished_state_ttl(self) -> int:
        return self.state_expires or self.result_expires

    # engines and routing (docs/routing.md): a JSON or TOML file of engines, the default strategy,
    # the heartbeat interval of a node serving an engine (gone after 3 missed), the router's cache of the view
    engines: str | None = None
    route_strategy: str = "best_available"
    engine_heartbeat_interval: float = Field(default=2.0, gt=0)
    route_cache_ttl: float = Field(default=0.5, ge=0)
    route_exploration: float = Field(default=0.05, ge=0, le=1)
    # load_balanced / resource_aware: a step stays on the engine that ran its predecessor in this
    # worker while that engine's load (queued + in flight per consumer) is at most this much above
    # the least loaded one's, so a chain keeps running fused; 0 turns locality off
    route_locality_margin: float = Field(default=1.0, ge=0)
    max_fallbacks: int = Field(default=2, ge=0)
    # seconds a routed step may wait on its engine's queue before an idle worker of another engine takes it
    route_timeout: float | None = Field(default=None, gt=0)

    # telemetry (docs/observability.md): middleware classes built in every process ("pkg.mod:Class")
    middleware: list[str] = Field(default_factory=list)

    # deploy render (docs/operations.md): the longest a step may run when it declares no time_limit,
    # and what terminationGracePeriodSeconds adds to a fleet's longest step for the warm shutdown
    deploy_step_seconds: int = Field(default=600, ge=1)
    deploy_grace_margin: int = Field(default=30, ge=0)

    # limits, retention, schedules (docs/limits.md, docs/retention-and-schedules.md): limits per
    # capability, held across every worker ({"payments": {"rate": "5/s", "concurrency": 10}});
    # a dead process's concurrency slot frees after limit_lease_ttl s; a limited step sleeps at most
    # limit_max_wait s before it looks again; the schedules `canvasflow schedule` writes and beat reads
    capability_limits: dict[str, dict[str, str | int]] = Field(default_factory=dict)
    limit_lease_ttl: float = Field(default=30.0, ge=1)
    limit_max_wait: float = Field(default=5.0, gt=0)
    schedules_file: str = "canvasflow-schedules.json"
    # telemetry built-ins (docs/observability.md): Prometheus metrics (prometheus-client's multiprocess
    # directory, default <tmp>/canvasflow-metrics-<key prefix>; a worker's own /metrics port), traces, events
    metrics: bool = False
    metrics_dir: str | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    tracing: Literal["none", "console", "otlp"] = "none"  # otlp: the SDK's OTEL_EXPORTER_OTLP_* variables
    events: bool = False  # every run and step event appended to the Redis stream <key prefix>:events
    events_maxlen: int = Field(default=100_000, ge=100)  # about this many events are kept (XADD MAXLEN ~)

    # routing with no live engine that fits a step (docs/routing.md): refuse the run at start, or start
    # it and let the step wait on the queue of the best declared engine that fits
    route_when_none_live: Literal["refuse", "wait"] = "refuse"

    # web console and Flower (docs/console.md): the console's address and credentials (basic auth
    # and/or a bearer token; required when bound beyond localhost), runs per page, Flower's URL for
    # links; `canvasflow flower`'s user:password[,user:password] and its persistent state file
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8077, ge=1, le=65535)
    ui_username: str | None = None
    ui_password: str | None = None
    ui_token: str | None = None
    ui_page_size: int = Field(default=50, ge=1, le=1000)
    flower_url: str | None = None
    flower_basic_auth: str | None = None
    flower_db: str = "var/flower.db"
    # throughput (docs/BENCHMARKS.md): step messages published in one Redis pipeline when a run
    # starts or a step releases several successors at once (RabbitMQ: confirmed together)
    publish_batch_size: int = Field(default=500, ge=1)
    # the journal's connection pool in each process (PostgreSQL; SQLAlchemy's QueuePool): kept
    # open, extra allowed beyond it, seconds before a connection is replaced, seconds to wait for one
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_recycle: int = Field(default=1800, ge=-1)
    database_pool_timeout: float = Field(default=30.0, gt=0)
    # threads canvasflow.aio runs the client's calls in, per process (None: the journal's pool
    # size plus its overflow, so no thread waits for a database connection)
    aio_threads: int | None = Field(default=None, ge=1, le=256)
    # bytes of run graphs (their JSON) each process keeps parsed, so many runs in flight share no reads
    graph_cache_bytes: int = Field(default=8 * 2**20, ge=0)
    # chain fusion (docs/performance.md): a step that releases one successor bound for the queue it
    # came from runs that successor itself, without a broker hop; at most this many per delivery
    # (0: never), and none started once the delivery has run this many seconds
    fuse_hops: int = Field(default=16, ge=0)
    fuse_budget: float = Field(default=0.5, ge=0)
    # fan-out bundles: a ready set of at least 2 x this many plain steps for one queue is published
    # as about this many messages, each carrying siblings its worker runs after it (0: never)
    fanout_spread: int = Field(default=32, ge=0)

    @property
    def redis_state_url(self) -> str:
        url = self.state_url or self.result_backend
        return with_master(url, self.sentinel_master) if is_sentinel_url(url) else url

    @model_validator(mode="after")
    def _sentinel_master(self) -> Settings:
        """A sentinel state or blob URL without ``?master_name=`` names ``sentinel_master``."""
        for name in ("state_url", "blob_url"):
            url = getattr(self, name)
            if url and is_sentinel_url(url):
                object.__setattr__(self, name, with_master(url, self.sentinel_master))
        return self

    # Redis Cluster for run state (docs/redis-cluster.md): STATE_URL and BLOB_URL may be
    # redis+cluster://host:port[,host:port...]/0; a malformed URL is refused here, not at first use
    @field_validator("state_url", "blob_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        problem = None if value is None else url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


def _variable(loc: tuple[object, ...]) -> str:
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation failure into a SettingsError naming each variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{_variable(e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    except SourceError as exc:  # a list or dict variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = _variable((field.group(1),)) if field else "a CANVASFLOW_* variable"
        raise SettingsError(
            f"invalid settings: {name} is not JSON; give a JSON list or object, e.g. {name}='[\"app.flows\"]'"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return load_settings()


def set_for_process(**values: object) -> Settings:
    """Set settings for this process and the processes it starts (as ``CANVASFLOW_*`` variables).

    For entry points (the CLI) before the app is built; lists and dicts are written as JSON.
    Returns the settings read again, refusing bad values like the environment would.
    """
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        os.environ[ENV_PREFIX + name.upper()] = text
    get_settings.cache_clear()
    return get_settings()


def control_queue() -> str:
    """The control queue, for task declarations at import: a bad setting is not an import error
    there (the CLI names it in one line; a worker fails on its next get_settings())."""
    try:
        return get_settings().control_queue
    except SettingsError:
        return str(Settings.model_fields["control_queue"].default)


def redact(url: str) -> str:
    """The URL with any password replaced, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)
