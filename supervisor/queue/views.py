"""What `fac queue` and the dashboard show of the queue: one row per entry, with its last verdict."""

from __future__ import annotations

import time
from typing import Any

from supervisor import availability, checks, line, repo
from supervisor.factory import Factory
from supervisor.model import EntryState
from supervisor.queue import planner
from supervisor.queue.runner import NO_CHECKS
from supervisor.text import iso_time


def testing_progress(state: str, since: float | None, running: tuple[str, ...], now: float) -> str:
    """What a testing entry is doing: how long it has been under test and which checks run now."""
    if state != "testing" or since is None:
        return ""
    took = f"testing {max(0.0, now - since):.0f}s"
    return f"{took}: running {', '.join(running)}" if running else took


def queue_rows(fac: Factory, all_entries: bool = False) -> list[dict[str, Any]]:
    now = time.time()
    shown: tuple[EntryState, ...] = ("queued", "testing", "held", "red", "conflict", "merged")
    states = None if all_entries else shown
    rows = []
    for e in fac.store.queue(states):
        v = e.verdict or {}
        since = e.testing_since if e.state == "testing" else None
        if not v:
            last = ""
        elif v.get("ok"):
            last = "green" + (f" ({v['note']})" if v.get("note") else "")
        elif v.get("why"):
            last = f"{v.get('reason', 'held')}: " + "; ".join(v["why"])
        elif v.get("failed"):
            last = "red: " + ", ".join(f["name"] for f in v["failed"])
        else:
            last = str(v.get("reason", "red")) + (f": {', '.join(v['paths'])}" if v.get("paths") else "")
        rows.append(
            {
                "id": e.id,
                "worker": e.worker,
                "branch": e.branch,
                "sha": e.sha,
                "state": e.state,
                "attempts": e.attempts,
                "submitted_at": e.submitted_at,
                "submitted_at_iso": iso_time(e.submitted_at),
                "updated_at": e.updated_at,
                "updated_at_iso": iso_time(e.updated_at),
                "last_verdict": last,
                "merged_as": e.merged_as,
                "verdict": e.verdict,
                "testing_since": since,
                "testing_since_iso": iso_time(since),
                "elapsed": round(max(0.0, now - since), 1) if since is not None else None,
                "running": list(e.running) if since is not None else [],
                "progress": testing_progress(e.state, e.testing_since, e.running, now),
            }
        )
    return rows


def line_holds(fac: Factory) -> list[dict[str, Any]]:
    """The queue's holds on queued entries, by the planner's own rules: while the line is stopped
    only fixes merge ("line stopped", with its reason), and with no gate check on main nothing merges
    ("no gate checks"), and while the executor backs off after a failure nothing starts ("executor
    unavailable", saying when it is tried again). Each: {"reason", "why", "entries": [{"id",
    "worker", "branch", "sha"}]}."""
    pending = fac.store.queue(("queued",))
    if not pending:
        return []
    holds: list[dict[str, Any]] = []
    ln = line.get(fac)
    if ln.stopped:

        def is_fix(e: Any) -> bool:
            w = fac.store.worker(e.worker)
            return w is not None and w.role in line.FIX_ROLES

        may = {e.id for e in planner.eligible(pending, line_stopped=True, is_fix=is_fix)}
        waiting = [e for e in pending if e.id not in may]
        if waiting:
            why = f"line stopped: {ln.reason}; only fixes merge until main is green"
            holds.append({"reason": "line stopped", "why": why, "entries": _brief(waiting)})
    down = availability.Availability(*fac.store.executor_state())
    if not down.available:
        why = availability.describe(down, time.time())
        holds.append({"reason": "executor unavailable", "why": why, "entries": _brief(pending)})
    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    if main is not None:
        suite = checks.suite_from_rev(fac.root, main, fac.fac_dir / "suites")
        if planner.hold_for_no_checks(len(suite.for_stage("gate")), fac.config.queue.allow_no_checks):
            holds.append({"reason": "no gate checks", "why": NO_CHECKS, "entries": _brief(pending)})
    return holds


def _brief(entries: list[Any]) -> list[dict[str, Any]]:
    return [{"id": e.id, "worker": e.worker, "branch": e.branch, "sha": e.sha} for e in entries]
