"""A step's routing decisions in order, each with its outcome (workers/routing/decisions.py)."""

from __future__ import annotations

from canvasflow.workers.routing.decisions import (
    after_death,
    chain_text,
    journaled,
    pinned_route,
    readdressed,
    superseded,
)

FIRST = {
    "engine": "ocr/gpu",
    "queue": "cap.ocr.gpu",
    "strategy": "best_available",
    "reason": "highest",
    "at": 1.0,
}


def test_a_fallback_keeps_the_failed_decision_with_its_outcome_worker_and_error() -> None:
    past = superseded(FIRST, "EngineError", worker="w1", error="boom")
    second = {
        "engine": "ocr/cpu",
        "queue": "cap.ocr.cpu",
        "strategy": "best_available",
        "reason": "next",
        "at": 2.0,
    }
    route = {**second, "tried": ["ocr/gpu"], "past": past}
    assert journaled(route, "succeeded") == [
        {**FIRST, "outcome": "EngineError", "worker": "w1", "error": "boom"},
        {**second, "outcome": "ran"},
    ]


def test_takeover_and_route_timeout_name_what_became_of_the_old_decision() -> None:
    taken = readdressed(FIRST, "ocr/cpu", "cap.ocr.cpu", "taken over from ocr/gpu: no live worker there", 3.0)
    timed = readdressed(
        FIRST, "ocr/cpu", "cap.ocr.cpu", "queued on ocr/gpu longer than route_timeout (2s)", 3.0
    )
    assert [d.get("outcome") for d in journaled(taken, "running")] == ["taken over", None]
    assert [d.get("outcome") for d in journaled(timed, "succeeded")] == ["timed out", "ran"]
    assert (
        taken["tried"] == ["ocr/gpu"]
        and taken["engine"] == "ocr/cpu"
        and taken["strategy"] == "best_available"
    )


def test_an_attempt_a_dead_worker_never_finished_is_kept() -> None:
    previous = {"worker": "gpu-1", "started_at": "2026-01-01T00:00:00+00:00", "route": FIRST}
    again = after_death(FIRST, previous, 1)  # redelivered to the same engine
    assert [(d["engine"], d.get("outcome")) for d in journaled(again, "succeeded")] == [
        ("ocr/gpu", "engine died"),
        ("ocr/gpu", "ran"),
    ]
    assert again["past"][0]["worker"] == "gpu-1" and again["past"][0]["attempt"] == 1
    # taken over after the death: one entry for the dead engine, "engine died"
    taken = readdressed(FIRST, "ocr/cpu", "cap.ocr.cpu", "taken over from ocr/gpu: no live worker there", 3.0)
    merged = after_death(taken, previous, 1)
    assert [(d["engine"], d.get("outcome")) for d in journaled(merged, "succeeded")] == [
        ("ocr/gpu", "engine died"),
        ("ocr/cpu", "ran"),
    ]
    # a fallback journaled that attempt already: nothing added
    failed = {**FIRST, "engine": "ocr/cpu", "past": superseded(FIRST, "EngineError", worker="gpu-1")}
    assert after_death(failed, previous, 1) == failed


def test_a_failure_of_the_engine_and_of_the_step_are_told_apart() -> None:
    assert journaled(FIRST, "failed", {"type": "EngineError"})[-1]["outcome"] == "EngineError"
    assert journaled(FIRST, "failed", {"type": "ValueError"})[-1]["outcome"] == "ran"
    assert "outcome" not in journaled(FIRST, "waiting")[-1]


def test_a_member_pinned_to_an_engine_queue_has_a_decision_of_its_own() -> None:
    pinned = pinned_route("cap.ocr.gpu")
    assert pinned is not None and (pinned["engine"], pinned["strategy"]) == ("ocr/gpu", "pinned")
    assert pinned_route("cap.ocr") is None and pinned_route(None) is None


def test_the_chain_as_text_reads_oldest_first() -> None:
    route = {**FIRST, "engine": "ocr/cpu", "past": superseded(FIRST, "EngineError", worker="w1")}
    text = chain_text(journaled(route, "succeeded"))
    assert text.index("ocr/gpu") < text.index("ocr/cpu")
    assert "-> EngineError on w1" in text and text.endswith("-> ran")
    assert chain_text(None, FIRST) == "ocr/gpu (best_available: highest)"
