"""What `fac queue` and the dashboard show of the queue: one row per entry, with its last verdict."""

from __future__ import annotations

from typing import Any

from supervisor.factory import Factory
from supervisor.model import EntryState
from supervisor.text import iso_time


def queue_rows(fac: Factory, all_entries: bool = False) -> list[dict[str, Any]]:
    shown: tuple[EntryState, ...] = ("queued", "testing", "held", "red", "conflict", "merged")
    states = None if all_entries else shown
    rows = []
    for e in fac.store.queue(states):
        v = e.verdict or {}
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
            }
        )
    return rows
