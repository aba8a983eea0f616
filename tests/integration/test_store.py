"""The run store on SQLite and on PostgreSQL: the same tests, both real databases."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from canvasflow.workflows.store.models import journal_tables
from canvasflow.workflows.store.schema import autogenerate_options, current_revision, head_revision
from canvasflow.workflows.store.sql import SqlRunStore, store_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> SqlRunStore:
    if request.param == "sqlite":
        return store_for(f"sqlite:///{tmp_path / 'store.db'}")
    return store_for(request.getfixturevalue("postgres_url"))


def new_run(store: SqlRunStore, steps=("a", "b")) -> str:
    run_id = uuid.uuid4().hex
    store.create_run(
        run_id=run_id,
        workflow="wf",
        version="1",
        inputs={"x": 1},
        graph={"steps": [{"id": s} for s in steps], "result": {"v": None}},
        steps=[
            {"step_id": s, "task": "demo.add", "kind": "task", "queue": "cap.demo", "compensation": None}
            for s in steps
        ],
    )
    return run_id


def test_migrations_match_the_models(store):
    """Alembic's head and the models agree: autogenerate finds nothing to change."""
    names = store.t.names
    assert current_revision(store.engine, names) == head_revision()
    opts = autogenerate_options(names)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), journal_tables().metadata)
    assert diff == []


def test_a_run_and_its_steps_round_trip(store):
    run_id = new_run(store)
    store.record_step(run_id, "a", "step.succeeded", status="succeeded", attempts=1, result={"k": [1, 2]})
    record = store.get_run(run_id)
    assert record.status == "running" and record.inputs == {"x": 1}
    assert [s.step_id for s in record.steps] == ["a", "b"]
    assert record.step("a").result == {"k": [1, 2]} and record.step("b").status == "pending"
    assert [e["event"] for e in store.events(run_id)] == ["run.created", "step.succeeded"]


def test_status_changes_only_from_the_expected_state(store):
    run_id = new_run(store)
    assert store.transition_run(run_id, ("running",), "failed", error={"m": "x"})
    assert not store.transition_run(run_id, ("running",), "succeeded")
    assert store.get_run(run_id).status == "failed"


def test_racing_transitions_have_one_winner(store):
    run_id = new_run(store)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        wins.append(store.transition_run(run_id, ("running",), "compensating"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert [e["event"] for e in store.events(run_id)].count("run.compensating") == 1


def test_a_signal_is_stored_once(store):
    run_id = new_run(store)
    assert store.put_signal(run_id, "go", {"ok": True})
    assert not store.put_signal(run_id, "go", {"ok": False})
    assert store.get_signal(run_id, "go") == (True, {"ok": True})


def test_listing_filters_by_status_and_workflow(store):
    first, second = new_run(store), new_run(store)
    store.transition_run(first, ("running",), "failed")
    failed = {r.id for r in store.list_runs(status="failed", workflow="wf")}
    assert first in failed and second not in failed


def test_definitions_are_recorded_once_per_version(store):
    store.record_definition("wf", "1", {"type": "object"})
    store.record_definition("wf", "1", {"type": "object"})
    store.record_definition("wf", "2", {"type": "object", "properties": {}})
    assert [(d["name"], d["version"]) for d in store.definitions("wf")] == [("wf", "1"), ("wf", "2")]


def test_racing_creates_with_one_key_make_one_run(store):
    key = f"order-{uuid.uuid4().hex[:8]}"
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def race() -> None:
        run_id = uuid.uuid4().hex
        barrier.wait()
        winners.append(
            store.create_run(
                run_id=run_id, workflow="wf", version="1", inputs={}, graph={"steps": [], "result": {"v": 0}},
                steps=[], key=key, tags=["a", "b", "a"],
            )
        )  # fmt: skip

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 6 and len(set(winners)) == 1
    (run,) = store.list_runs(key=key)
    assert run.id == winners[0] and run.tags == ["a", "b"]
    assert [r.id for r in store.list_runs(tags=["a", "b"], key=key)] == [run.id]


def test_listing_by_creation_time_in_any_offset(store):
    from datetime import UTC, datetime, timedelta, timezone

    run_id = new_run(store)
    created = store.get_run(run_id).created_at
    east = timezone(timedelta(hours=5))
    just_before = (created - timedelta(seconds=1)).astimezone(east)
    just_after = (created + timedelta(seconds=1)).astimezone(east)
    assert run_id in {r.id for r in store.list_runs(since=just_before, until=just_after)}
    assert run_id not in {r.id for r in store.list_runs(since=just_after)}
    assert run_id not in {
        r.id for r in store.list_runs(until=just_before.replace(tzinfo=None) - timedelta(hours=5))
    }
    assert created.tzinfo is not None and created <= datetime.now(UTC)


def test_moving_a_run_to_another_version_updates_adds_and_skips_steps_once(store):
    run_id = new_run(store, steps=("a", "b", "c"))
    store.record_step(run_id, "a", "step.succeeded", status="succeeded", attempts=1, result=2)
    assert store.transition_run(run_id, ("running",), "failed")
    graph = {"steps": [{"id": s} for s in ("a", "b", "d")], "result": {"r": "d"}}
    rows = [
        {"step_id": "b", "task": "demo.mul", "kind": "task", "queue": "cap.demo", "compensation": None},
        {"step_id": "d", "task": "demo.add", "kind": "task", "queue": "cap.demo", "compensation": "x.undo"},
    ]
    moved = dict(version="2", graph=graph, steps=rows, skipped=["c"], data={"kept": ["a"]})
    assert store.move_version(run_id, ("failed",), **moved)
    assert not store.move_version(run_id, ("cancelled",), **moved)  # guarded by the run's status
    record = store.get_run(run_id)
    assert record.version == "2" and record.graph == graph and record.status == "failed"
    steps = {s.step_id: s for s in record.steps}
    assert steps["a"].status == "succeeded" and steps["a"].result == 2  # kept as it was
    assert steps["b"].task == "demo.mul" and steps["c"].status == "skipped"
    assert steps["d"].status == "pending" and steps["d"].compensation == "x.undo"
    assert [e["data"] for e in store.events(run_id) if e["event"] == "run.migrated"] == [{"kept": ["a"]}]


def _batch_run(run_id: str, key: str | None = None, tags=("t",)):
    from canvasflow.workflows.store.creation import NewRun

    steps = [{"step_id": s, "task": "demo.add", "kind": "task", "queue": "cap.demo"} for s in ("a", "b")]
    graph = {"steps": [{"id": "a"}, {"id": "b"}], "result": {"v": None}}
    return NewRun(run_id, "wf", "1", {"i": run_id}, graph, steps, key=key, tags=tags)


def test_a_batch_of_runs_is_journaled_in_one_go_with_its_steps_tags_and_events(store):
    ids = [uuid.uuid4().hex for _ in range(50)]
    assert store.create_runs([_batch_run(i) for i in ids]) == ids
    for run_id in (ids[0], ids[-1]):
        record = store.get_run(run_id)
        assert record.status == "running" and record.inputs == {"i": run_id} and record.tags == ["t"]
        assert [(s.step_id, s.status, s.attempts) for s in record.steps] == [
            ("a", "pending", 0),
            ("b", "pending", 0),
        ]
        assert [e["event"] for e in store.events(run_id)] == ["run.created"]
    assert {r.id for r in store.list_runs(tags=["t"], limit=1000)} >= set(ids)


def test_a_batch_gives_a_held_key_its_holder_and_a_key_twice_one_run(store):
    held, fresh = f"k-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:8]}"
    first = uuid.uuid4().hex
    assert store.create_runs([_batch_run(first, key=held)]) == [first]
    a, b, c = (uuid.uuid4().hex for _ in range(3))
    got = store.create_runs([_batch_run(a, key=held), _batch_run(b, key=fresh), _batch_run(c, key=fresh)])
    assert got == [first, b, b]
    assert store.get_run(a) is None and store.get_run(c) is None
    assert store.workflows_by_keys([held, fresh, "nobody"]) == {held: "wf", fresh: "wf"}


def test_one_run_is_one_statement_that_keeps_its_steps_tags_key_and_event(store):
    run_id, key = uuid.uuid4().hex, f"k-{uuid.uuid4().hex[:8]}"
    steps = [{"step_id": "x", "task": "demo.add", "kind": "map", "queue": None, "compensation": "demo.undo"}]
    graph = {"steps": [{"id": "x", "args": [{"v": "é"}]}], "result": {"r": "x"}}
    args = {"workflow": "wf", "version": "2", "inputs": {"s": "é"}, "graph": graph, "steps": steps}
    assert store.create_run(run_id=run_id, key=key, tags=["b", "a"], **args) == run_id
    assert store.create_run(run_id=uuid.uuid4().hex, key=key, **args) == run_id
    record = store.get_run(run_id)
    assert (
        record.graph == graph
        and record.inputs == {"s": "é"}
        and record.key == key
        and record.tags == ["b", "a"]
    )
    (step,) = record.steps
    assert (step.kind, step.queue, step.compensation, step.status) == ("map", None, "demo.undo", "pending")
    (event,) = store.events(run_id)
    assert event["event"] == "run.created" and event["data"] == {"workflow": "wf", "key": key}
    assert store.create_run(run_id=uuid.uuid4().hex, **{**args, "steps": []}) != run_id  # no steps, no tags


def test_step_statuses_read_one_query_and_tell_a_missing_run(store):
    run_id = new_run(store)
    store.record_step(run_id, "a", "step.succeeded", status="succeeded", attempts=1)
    assert store.step_statuses(run_id) == {"a": "succeeded", "b": "pending"}
    assert store.step_statuses(uuid.uuid4().hex) is None
    empty = new_run(store, steps=())
    assert store.step_statuses(empty) == {}


def test_a_batch_of_step_records_lands_as_executemany_would_write_it(store):
    """The journal writer's batch: every value kind (JSON null, text, objects, times), a step
    recorded twice with the same fields (the last wins) and twice with other fields (both
    land, in order), each record's event kept. On PostgreSQL the first batch is one
    statement (pg_batch.py), the second falls back to ``executemany``."""
    from datetime import UTC, datetime

    run_id = new_run(store, steps=("a", "b", "c"))
    began = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    done = {"status": "succeeded", "attempts": 1, "worker": "w@h", "started_at": began}
    route = {
        "engine": "ocr/gpu",
        "queue": "cap.ocr.gpu",
        "strategy": "best_available",
        "reason": "r",
        "at": 1.5,
    }
    store.record_many(
        [
            (run_id, "a", "step.started", {**done, "status": "running", "result": None}),
            (run_id, "a", "step.succeeded", {**done, "result": None}),
            (run_id, "b", "step.succeeded", {**done, "result": 'it\'s "quoted"', "route": route}),
            (run_id, "c", "step.failed", {"status": "failed", "error": {"type": "KeyError", "message": "0"}}),
        ]
    )
    record = store.get_run(run_id)
    a, b, c = record.step("a"), record.step("b"), record.step("c")
    assert (a.status, a.attempts, a.worker, a.result) == ("succeeded", 1, "w@h", None)
    assert a.started_at is not None and a.started_at.replace(tzinfo=UTC) == began  # SQLite: naive UTC
    assert b.result == 'it\'s "quoted"' and b.route == route
    assert b.routes == [{**route, "outcome": "ran"}]
    assert c.status == "failed" and c.error == {"type": "KeyError", "message": "0"}
    events = [(e["step_id"], e["event"]) for e in store.events(run_id)][1:]
    assert events == [
        ("a", "step.started"),
        ("a", "step.succeeded"),
        ("b", "step.succeeded"),
        ("c", "step.failed"),
    ]

    store.record_many(  # a step twice with other fields: one statement cannot update it twice
        [
            (run_id, "c", "step.queued", {"status": "queued"}),
            (run_id, "c", "step.succeeded", {"status": "succeeded", "result": [1, 2], "error": None}),
        ]
    )
    c = store.get_run(run_id).step("c")
    assert (c.status, c.result, c.error) == ("succeeded", [1, 2], None)


@pytest.mark.postgres
def test_a_pooled_connection_the_server_closed_is_replaced_before_use(postgres_url):
    """No ``SELECT 1`` per checkout: a connection PostgreSQL terminated (a restart, an idle
    timeout, ``pg_terminate_backend``) is noticed by its socket and replaced; the call works."""
    import psycopg
    from sqlalchemy import text

    store = store_for(postgres_url)
    with store.engine.connect() as conn:
        pid = conn.execute(text("select pg_backend_pid()")).scalar()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (pid,))
        gone = "select count(*) from pg_stat_activity where pid = %s"
        for _ in range(100):  # until the server has closed it
            if admin.execute(gone, (pid,)).fetchone() == (0,):
                break
            time.sleep(0.02)
    run_id = new_run(store)  # through the pool: the closed connection is not handed out
    assert store.step_statuses(run_id) == {"a": "pending", "b": "pending"}
    with store.engine.connect() as conn:
        assert conn.execute(text("select pg_backend_pid()")).scalar() != pid


@pytest.mark.postgres
def test_postgres_reads_run_in_autocommit_and_keep_the_statements_psycopg_prepared(postgres_url):
    """A read sends no ``BEGIN``/``ROLLBACK``: psycopg drops what it prepared on a ``ROLLBACK``,
    so the run's end parsed its statements again every time."""
    store_for(postgres_url)  # the schema
    store = SqlRunStore(postgres_url)  # a pool of its own: one connection, reused
    try:
        run_id = new_run(store)
        for _ in range(8):  # psycopg prepares a statement on its sixth run on a connection
            assert store.step_statuses(run_id) == {"a": "pending", "b": "pending"}
        with store.reading() as conn:
            assert conn.connection.driver_connection.info.transaction_status.name == "IDLE"
            prepared = conn.execute(text("select statement from pg_prepared_statements")).scalars().all()
            mode = conn.execute(text("show plan_cache_mode")).scalar()
        assert any("step_id" in statement for statement in prepared)
        # and planned for the tables as they are, not a generic plan kept from when they were small
        assert mode == "force_custom_plan"
    finally:
        store.engine.dispose()
