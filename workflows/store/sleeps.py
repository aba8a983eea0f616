"""The journal of durable timers: a sleep step falling asleep, runs woken, a step's due time.

Falling asleep is one transaction (the step ``waiting`` with its ``wakes_at``, the run
``waiting``), and the timer service moves every run it woke back to ``running`` in one
transaction per look, so a thousand runs asleep cost a thousand commits less on each side.
Mixed into :class:`~canvasflow.workflows.store.sql.SqlRunStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, select

from canvasflow.workflows.store.models import JournalTables
from canvasflow.workflows.store.rows import aware, now, utc

CHUNK = 500  # run ids per statement


class SleepJournal:
    """Writes and reads of sleep steps on the journal's tables ``t`` through ``engine``."""

    engine: Engine
    t: JournalTables

    def sleeping(self, run_id: str, step_id: str, started_at: datetime, wakes_at: datetime) -> None:
        """A sleep step fell asleep until ``wakes_at``: the step and (from ``running``) the run wait."""
        steps, runs, at = self.t.steps, self.t.runs, now()
        data = {
            "status": "waiting",
            "started_at": utc(started_at).isoformat(),
            "wakes_at": utc(wakes_at).isoformat(),
        }
        events = [{"run_id": run_id, "step_id": step_id, "event": "step.sleeping", "at": at, "data": data}]
        with self.engine.begin() as conn:
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.step_id == step_id)
                .values(status="waiting", attempts=1, started_at=started_at, wakes_at=wakes_at)
            )
            moved = conn.execute(
                runs.update().where(runs.c.id == run_id, runs.c.status == "running").values(status="waiting")
            )
            if moved.rowcount == 1:
                events.append(
                    {"run_id": run_id, "step_id": None, "event": "run.waiting", "at": at, "data": None}
                )
            conn.execute(self.t.events.insert(), events)

    def woken(self, run_ids: Iterable[str]) -> list[str]:
        """Runs whose last sleeping step woke: ``waiting`` -> ``running`` (guarded); those moved."""
        runs, ids, moved = self.t.runs, list(dict.fromkeys(run_ids)), []
        if not ids:
            return []
        at = now()
        with self.engine.begin() as conn:
            for i in range(0, len(ids), CHUNK):
                stmt = (
                    runs.update()
                    .where(runs.c.id.in_(ids[i : i + CHUNK]), runs.c.status == "waiting")
                    .values(status="running")
                    .returning(runs.c.id)
                )
                moved += list(conn.scalars(stmt))
            if moved:
                conn.execute(
                    self.t.events.insert(),
                    [
                        {"run_id": r, "step_id": None, "event": "run.running", "at": at, "data": None}
                        for r in moved
                    ],
                )
        return moved

    def wakes_at(self, run_id: str, step_id: str) -> datetime | None:
        """When a sleep step is due, as journaled (None: not journaled, or not a sleep)."""
        steps = self.t.steps
        with self.engine.connect() as conn:
            at = conn.scalar(
                select(steps.c.wakes_at).where(steps.c.run_id == run_id, steps.c.step_id == step_id)
            )
        return aware(at)
