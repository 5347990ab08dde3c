"""`fac report`: flow metrics for kaizen, computed from the append-only event log.

- lead time per task: spawned -> merged;
- waiting time: each submission's wait for its verdict (queue + gate); active = lead - waiting;
  flow efficiency = active / lead;
- first-pass yield: merged with no red or conflict before it; rework rounds: reds and conflicts;
- queue wait p50/p95: submitted -> verdict; line stopped time and MTTR.
"""

from __future__ import annotations

import statistics
from typing import Any

from supervisor.factory import Factory
from supervisor.model import Event

VERDICTS = ("merged", "red", "conflict")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def compute(events: list[Event]) -> dict[str, Any]:
    spawned: dict[str, float] = {}
    merged: dict[str, float] = {}
    rework: dict[str, int] = {}
    submitted: dict[str, tuple[str, float]] = {}  # correlation -> (worker, ts)
    waits: list[float] = []
    waiting_by_worker: dict[str, float] = {}
    stops: list[float] = []
    stopped_at: float | None = None
    for ev in events:
        w = ev.worker
        if ev.kind == "spawned" and w:
            spawned.setdefault(w, ev.ts)
        elif ev.kind == "submitted" and w and ev.correlation:
            submitted[ev.correlation] = (w, ev.ts)
        elif ev.kind in VERDICTS and w:
            if ev.correlation in submitted:
                _, t0 = submitted.pop(ev.correlation)
                waits.append(ev.ts - t0)
                waiting_by_worker[w] = waiting_by_worker.get(w, 0.0) + (ev.ts - t0)
            if ev.kind == "merged":
                merged[w] = ev.ts
            elif w not in merged:
                rework[w] = rework.get(w, 0) + 1
        elif ev.kind == "line-stopped":
            stopped_at = ev.ts
        elif ev.kind == "line-resumed" and stopped_at is not None:
            stops.append(ev.ts - stopped_at)
            stopped_at = None
    tasks: list[dict[str, Any]] = []
    for w, t0 in spawned.items():
        if w not in merged:
            continue
        lead = merged[w] - t0
        waiting = min(lead, waiting_by_worker.get(w, 0.0))
        tasks.append(
            {
                "worker": w,
                "lead_time": round(lead, 3),
                "active": round(lead - waiting, 3),
                "waiting": round(waiting, 3),
                "flow_efficiency": round((lead - waiting) / lead, 3) if lead else None,
                "rework_rounds": rework.get(w, 0),
            }
        )
    n = len(tasks)
    return {
        "tasks": tasks,
        "merged": n,
        "lead_time_p50": _r(percentile([t["lead_time"] for t in tasks], 0.5)),
        "flow_efficiency": _r(
            statistics.mean([t["flow_efficiency"] for t in tasks if t["flow_efficiency"] is not None])
        )
        if n
        else None,
        "first_pass_yield": _r(sum(1 for t in tasks if t["rework_rounds"] == 0) / n) if n else None,
        "rework_rounds": sum(t["rework_rounds"] for t in tasks),
        "queue_wait_p50": _r(percentile(waits, 0.5)),
        "queue_wait_p95": _r(percentile(waits, 0.95)),
        "verdicts": len(waits),
        "line_stops": len(stops) + (1 if stopped_at is not None else 0),
        "line_stopped_seconds": _r(sum(stops)),
        "mttr": _r(statistics.mean(stops)) if stops else None,
        "line_stopped_now": stopped_at is not None,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def build(fac: Factory) -> dict[str, Any]:
    data = compute(fac.store.events())
    data["tokens"] = {
        w.name: {"in": w.tokens_in, "out": w.tokens_out, "cost": round(w.cost, 4)}
        for w in fac.store.workers()
        if w.tokens_in or w.tokens_out
    }
    return data


def render(data: dict[str, Any]) -> str:
    from supervisor.text import table

    def s(v: float | None, unit: str = "s") -> str:
        return "-" if v is None else f"{v:.1f}{unit}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.0f}%"

    lines = [
        f"merged tasks: {data['merged']}   lead time p50: {s(data['lead_time_p50'])}   "
        f"flow efficiency: {pct(data['flow_efficiency'])}   "
        f"first-pass yield: {pct(data['first_pass_yield'])}",
        f"rework rounds: {data['rework_rounds']}   queue wait p50/p95: {s(data['queue_wait_p50'])} / "
        f"{s(data['queue_wait_p95'])} over {data['verdicts']} verdicts",
        f"line stops: {data['line_stops']}   stopped for {s(data['line_stopped_seconds'])}   "
        f"MTTR: {s(data['mttr'])}",
    ]
    if data["tasks"]:
        rows = [
            [
                t["worker"],
                s(t["lead_time"]),
                s(t["active"]),
                s(t["waiting"]),
                pct(t["flow_efficiency"]),
                str(t["rework_rounds"]),
            ]
            for t in data["tasks"]
        ]
        lines += ["", table(rows, ["TASK (WORKER)", "LEAD", "ACTIVE", "WAITING", "EFFICIENCY", "REWORK"])]
    if data.get("tokens"):
        rows = [[w, str(t["in"]), str(t["out"]), f"${t['cost']:.4f}"] for w, t in data["tokens"].items()]
        lines += ["", table(rows, ["WORKER", "TOKENS IN", "TOKENS OUT", "COST"])]
    return "\n".join(lines)
