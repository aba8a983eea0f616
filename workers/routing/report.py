"""What ``canvasflow engines`` shows: each engine, its live workers, consumers, queue depth, in-flight."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

from canvasflow.config.brokers import queue_stats
from canvasflow.config.settings import Settings
from canvasflow.workers.engines import registry
from canvasflow.workers.routing.live import read_live


def engines_report(r: redis.Redis, s: Settings, app: Celery) -> list[dict[str, Any]]:
    """One row per declared engine, read fresh (no cache); depths from the broker's own API."""
    engines = registry.all()
    beats, ewma, _ = read_live(r, s.key_prefix, [])
    depth = {q.queue: q.depth for q in queue_stats(app, [e.queue for e in engines])} if engines else {}
    now = time.time()
    rows: list[dict[str, Any]] = []
    for e in engines:
        mine = [b for b in beats if b.get("engine") == e.key]
        rows.append(
            {
                **e.to_json(),
                "live": bool(mine),
                "workers": [
                    {
                        "worker": b["worker"],
                        "consumers": b.get("consumers", 0),
                        "inflight": b.get("inflight", 0),
                        "seen_s_ago": round(now - float(b.get("at", now)), 1),
                    }
                    for b in mine
                ],
                "consumers": sum(int(b.get("consumers", 0)) for b in mine),
                "inflight": sum(int(b.get("inflight", 0)) for b in mine),
                "depth": depth.get(e.queue, 0),
                "ewma_ms": ewma.get(e.key),
            }
        )
    known = {e.key for e in engines}
    for b in beats:
        if b.get("engine") not in known:
            rows.append(
                {"name": b.get("engine"), "unregistered": True, "workers": [{"worker": b.get("worker")}]}
            )
    return rows


def report_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no engines declared (CANVASFLOW_ENGINES, or Engine(...) in a workflow module)"
    lines = []
    for row in rows:
        if row.get("unregistered"):
            lines.append(
                f"{row['name']:<24} NOT REGISTERED (heartbeats ignored) {row['workers'][0]['worker']}"
            )
            continue
        ewma = f"{row['ewma_ms']:.1f}ms" if row["ewma_ms"] is not None else "-"
        workers = ", ".join(w["worker"] for w in row["workers"]) or "no live worker"
        lines.append(
            f"{row['capability'] + '/' + row['name']:<24} prio={row['priority']:<3} depth={row['depth']:<5} "
            f"consumers={row['consumers']:<3} inflight={row['inflight']:<3} ewma={ewma:<9} {workers}"
        )
    return "\n".join(lines)
