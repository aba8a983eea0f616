"""Flower settings for canvasflow (Flower 2.2): a file Flower executes, not a module to import.

``canvasflow deploy render`` writes it into the deploy folder (``--out``, as ``flowerconfig.py``),
from where the rendered Flower reads it (a ConfigMap kustomize generates from it). Edit that
copy; a render writes it again. Use it with the same app, and so the same broker, as the workers::

    celery -A yourproject.celery flower --conf=deploy/k8s/flowerconfig.py

Flower executes this file as Python and applies every top-level name that matches one of
its options (see flower/options.py); names starting with ``_`` match none and are ignored.

Precedence, lowest first: Flower's defaults, ``FLOWER_<OPTION>`` environment variables
(Flower reads those itself), this file, then command-line flags (``--port=...``). This file
is applied after the environment, so each value below is read from the same
``FLOWER_<OPTION>`` variable first: the environment still wins over the defaults here.

The broker is not set here: Flower takes it from the app (``canvasflow.app``: from
``CANVASFLOW_BROKER_URL``, and ``CANVASFLOW_RESULT_BACKEND`` for task results).
"""

import os as _os


def _env(name: str, default: str) -> str:
    """``FLOWER_<name>`` from the environment, or ``default`` when unset or blank."""
    value = _os.environ.get(f"FLOWER_{name}", "").strip()
    return value or default


def _flag(name: str, default: bool) -> bool:
    return _env(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


def _credentials(raw: str) -> list[str]:
    """``user:password[,user:password...]``; refuse anything Flower could never match."""
    entries = [part.strip() for part in raw.split(",") if part.strip()]
    bad = [e.split(":", 1)[0] or "<empty user>" for e in entries if not all(e.partition(":")[::2])]
    if not entries or bad:
        raise SystemExit(
            "flowerconfig: FLOWER_BASIC_AUTH must be user:password[,user:password] "
            f"(bad entries for: {', '.join(bad) or 'none given'})"
        )
    return entries


# -- where to listen ----------------------------------------------------------------------
# 0.0.0.0 so that the port published by Docker / the Kubernetes Service reaches it.
# For a local run, pass --address=127.0.0.1 on the command line.
port = int(_env("PORT", "5555"))
address = _env("ADDRESS", "0.0.0.0")

# -- authentication -----------------------------------------------------------------------
# HTTP basic auth from FLOWER_BASIC_AUTH="user:password" (several: comma separated; a
# password therefore cannot contain a comma). Unset: no authentication, so only ever bind
# such an instance to 127.0.0.1. /healthcheck and /metrics answer without credentials
# (probes and Prometheus); every page and /api/* needs them.
if _os.environ.get("FLOWER_BASIC_AUTH") is not None:
    basic_auth = _credentials(_os.environ["FLOWER_BASIC_AUTH"])
elif address not in ("127.0.0.1", "localhost", "::1"):
    raise SystemExit(
        f"flowerconfig: refusing to serve Flower on {address} without authentication: set "
        "FLOWER_BASIC_AUTH=user:password, or FLOWER_ADDRESS=127.0.0.1"
    )

# -- state --------------------------------------------------------------------------------
# Flower builds its view from the workers' task events. Persistent by default: the state is
# saved to FLOWER_DB every FLOWER_STATE_SAVE_INTERVAL ms (and when Flower stops) and loaded
# at start, so a restarted Flower still shows the tasks it saw. Put FLOWER_DB on a volume
# (docker-compose: flower-state; Kubernetes: the canvasflow-flower-state claim). The durable
# record of every run and step is still canvasflow's journal (`canvasflow status RUN`).
# Task ids name the run and the step: <run id>-<step id>-g<generation> (chunks: -c<i>).
persistent = _flag("PERSISTENT", True)
db = _env("DB", "/data/flower.db")
state_save_interval = int(_env("STATE_SAVE_INTERVAL", "60000"))

# Every canvasflow step is its own Celery task, so a busy system produces many tasks:
# keep the newest N in memory (Flower's default is 100000, a lot of RAM for one pod).
max_tasks = int(_env("MAX_TASKS", "10000"))
max_workers = int(_env("MAX_WORKERS", "5000"))
# Autoscaled worker pods come and go with new hostnames: drop offline workers from the
# dashboard after this many seconds instead of listing every pod that ever ran.
purge_offline_workers = int(_env("PURGE_OFFLINE_WORKERS", "1800"))
# Remote-control calls (the Workers page) wait this long (ms) for replies over Redis.
inspect_timeout = float(_env("INSPECT_TIMEOUT", "3000"))

# -- behind a reverse proxy / ingress -----------------------------------------------------
# Serving Flower under a path (https://ops.example.com/flower/) needs FLOWER_URL_PREFIX=flower:
# every route moves under it, including the probe path (/flower/healthcheck).
if _env("URL_PREFIX", ""):
    url_prefix = _env("URL_PREFIX", "").strip("/")
# Trust X-Real-Ip / X-Scheme from the proxy only when there is one in front.
xheaders = _flag("XHEADERS", False)
