"""SQLAlchemy 2 models of the run store: runs, their steps, and an append-only event journal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "cf_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(32), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    inputs: Mapped[Any] = mapped_column(JSON)
    graph: Mapped[Any] = mapped_column(JSON)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[Any] = mapped_column(JSON, nullable=True)
    parent_run_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("cf_runs.id"), nullable=True, index=True
    )
    parent_step: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StepRow(Base):
    __tablename__ = "cf_steps"

    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("cf_runs.id"), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="task")
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[Any] = mapped_column(JSON, nullable=True)
    compensation: Mapped[str | None] = mapped_column(String(200), nullable=True)
    compensation_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    compensation_error: Mapped[Any] = mapped_column(JSON, nullable=True)


class EventRow(Base):
    """Append-only: one row per transition of a run or step."""

    __tablename__ = "cf_events"
    __table_args__ = (Index("ix_cf_events_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("cf_runs.id"))
    step_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[Any] = mapped_column(JSON, nullable=True)


class DefinitionRow(Base):
    """Each (workflow, version) ever registered, so old runs stay explainable."""

    __tablename__ = "cf_definitions"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[str] = mapped_column(String(50), primary_key=True)
    input_schema: Mapped[Any] = mapped_column(JSON, nullable=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignalRow(Base):
    __tablename__ = "cf_signals"

    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("cf_runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
