"""`fac report`: flow metrics computed from the event log."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fac_json, fac_ok, run_fac
from queue_helpers import commit, failing_test, passing_test

from supervisor import report
from supervisor.factory import Factory
from supervisor.queue import MergeQueue
from supervisor.store import Event


def ev(i: int, ts: float, kind: str, worker: str | None = None, corr: str | None = None) -> Event:
    return Event(i, ts, kind, worker, corr, {})


def test_flow_metrics_from_a_known_event_log() -> None:
    events = [
        ev(1, 0, "spawned", "a"),
        ev(2, 0, "spawned", "b"),
        ev(3, 10, "submitted", "a", "q1"),
        ev(4, 12, "merged", "a", "q1"),  # a: lead 12, waiting 2, first pass
        ev(5, 20, "submitted", "b", "q2"),
        ev(6, 24, "red", "b", "q2"),  # b: red once
        ev(7, 30, "line-stopped"),
        ev(8, 40, "submitted", "b", "q3"),
        ev(9, 45, "line-resumed"),
        ev(10, 46, "merged", "b", "q3"),  # b: lead 46, waiting 4 + 6
    ]
    data = report.compute(events)
    by = {t["worker"]: t for t in data["tasks"]}
    assert by["a"] == {
        "worker": "a",
        "lead_time": 12,
        "active": 10,
        "waiting": 2,
        "flow_efficiency": round(10 / 12, 3),
        "rework_rounds": 0,
    }
    assert by["b"]["lead_time"] == 46 and by["b"]["waiting"] == 10 and by["b"]["rework_rounds"] == 1
    # Every submission's first gate run counts: q1 green, q2 red, q3 green (it was 0.5: merged tasks only).
    assert data["first_pass_yield"] == 0.667
    assert data["submissions"] == 3 and data["first_gate_runs"] == 3 and data["first_pass_green"] == 2
    # b sat red from 24 until it submitted again at 40: rework, not active (it was active 36)
    assert by["b"]["active"] == 20
    assert data["time"]["b"] == {"active": 20, "rework": 16, "waiting_for_queue": 10, "waiting_for_human": 0}
    assert data["rework_rounds"] == 1
    assert data["queue_wait_p50"] == 4  # waits: 2, 4, 6
    assert data["queue_wait_p95"] == 5.8
    assert data["line_stops"] == 1 and data["line_stopped_seconds"] == 15 and data["mttr"] == 15


def test_time_waiting_for_a_human_or_sitting_red_is_not_active_and_wip_shows_who_is_blocked() -> None:
    events = [
        ev(1, 0, "spawned", "a"),
        ev(2, 0, "spawned", "b"),
        ev(3, 0, "spawned", "c"),
        ev(4, 5, "andon", "a"),  # a asks at 5 ...
        ev(5, 25, "answered", "a"),  # ... and waits 20 for the answer
        ev(6, 30, "submitted", "a", "q1"),
        ev(7, 31, "held", "a", "q1"),  # held for a human's approval from 31 ...
        ev(8, 41, "approved", "a", "q1"),  # ... to 41
        ev(9, 43, "merged", "a", "q1"),
        ev(10, 10, "submitted", "b", "q2"),
        ev(11, 12, "red", "b", "q2"),  # b sits red from 12 to the end (50)
        ev(12, 20, "conflict", "c", None),  # not c's submission: ignored for the yield
        ev(13, 30, "andon", "c"),  # c is blocked from 30
        ev(14, 50, "line-stopped"),
    ]
    data = report.compute(events, now=50)
    assert data["time"]["a"] == {"active": 10, "rework": 0, "waiting_for_queue": 3, "waiting_for_human": 30}
    assert data["tasks"][0]["active"] == 10 and data["tasks"][0]["waiting"] == 33
    assert data["time"]["b"] == {"active": 10, "rework": 38, "waiting_for_queue": 2, "waiting_for_human": 0}
    assert data["time"]["c"]["waiting_for_human"] == 20
    assert [p["worker"] for p in data["in_progress"]] == ["b", "c"] and data["blocked"] == ["c"]
    assert data["first_pass_yield"] == 0.5 and data["submissions"] == 2


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], None),
        (["merged"], 1.0),
        (["red"], 0.0),
        (["red", "red", "merged"], 1 / 3),
        (["conflict", "merged"], 1.0),  # a conflict never reached the gate
    ],
)
def test_first_pass_yield_counts_every_submissions_first_gate_run(
    verdicts: list[str], expected: float | None
) -> None:
    events = [ev(0, 0, "spawned", "w")]
    for i, kind in enumerate(verdicts):
        events += [ev(2 * i + 1, i, "submitted", "w", f"q{i}"), ev(2 * i + 2, i + 0.5, kind, "w", f"q{i}")]
    yielded = report.compute(events)["first_pass_yield"]
    assert yielded == (None if expected is None else round(expected, 3))


def test_fac_report_after_a_real_run(factory: Path) -> None:
    for name, change in (("good", passing_test("good")), ("bad", failing_test("bad"))):
        fac_ok("spawn", "worker", "--no-up", "--name", name, "--cmd", "sleep 600", cwd=factory)
        commit(factory / ".fac/worktrees" / name, change)
        fac_ok("submit", "--worker", name, cwd=factory)
    MergeQueue(Factory(factory), retries=0).run(once=True)
    data = fac_json("report", cwd=factory)
    assert data["merged"] == 1 and data["tasks"][0]["worker"] == "good"
    assert data["verdicts"] == 2 and data["queue_wait_p50"] is not None
    text = run_fac("report", cwd=factory).stdout
    # bad was red on its first gate run: the yield counts it (it said 100%, counting merged work only)
    assert data["first_pass_yield"] == 0.5 and data["submissions"] == 2
    assert [p["worker"] for p in data["in_progress"]] == ["bad"] and data["blocked"] == []
    assert "first-pass yield: 50% (1 of 2 first gate runs green; 2 submissions)" in text
    assert "queue wait p50/p95" in text and "work in progress: 1 (bad)" in text
