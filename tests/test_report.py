"""`fac report`: flow metrics computed from the event log."""

from __future__ import annotations

from pathlib import Path

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
    assert data["first_pass_yield"] == 0.5
    assert data["rework_rounds"] == 1
    assert data["queue_wait_p50"] == 4  # waits: 2, 4, 6
    assert data["queue_wait_p95"] == 5.8
    assert data["line_stops"] == 1 and data["line_stopped_seconds"] == 15 and data["mttr"] == 15


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
    assert "first-pass yield: 100%" in text and "queue wait p50/p95" in text
