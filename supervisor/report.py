"""`fac report`: flow metrics for kaizen, computed from the append-only event log.

- each worker's time from its spawn is split into four buckets, by what it waited for at each moment:
  waiting for a human (an open `fac ask`, or a submission held for approval), waiting for the queue
  (a submission without a verdict), rework (sitting red or in conflict until it submits again), and
  active (the rest);
- lead time per merged task: spawned -> merged; flow efficiency = active / lead;
- first-pass yield over every submission: the submissions green on their first gate run / all first
  gate runs (a conflict or a cancelled entry never reached the gate); rework rounds: reds and
  conflicts before the merge;
- work in progress (spawned, not merged, not ended) and blocked (waiting for a human now);
- queue wait p50/p95: submitted -> verdict; line stopped time and MTTR.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from supervisor.factory import Factory
from supervisor.model import Event

VERDICTS = ("merged", "red", "conflict")
ENDED = ("finished", "stopped", "removed")  # a worker whose process ended or was killed
Bucket = Literal["active", "rework", "waiting_for_queue", "waiting_for_human"]
BUCKETS: tuple[Bucket, ...] = ("active", "rework", "waiting_for_queue", "waiting_for_human")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class _Clock:
    """One worker's time so far, and what it waits for right now."""

    start: float
    last: float
    spent: dict[Bucket, float] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0.0))
    open_subs: set[str] = field(default_factory=set)
    held: set[str] = field(default_factory=set)
    asking: bool = False
    red: bool = False
    ended: bool = False
    merged_at: float | None = None
    at_merge: dict[Bucket, float] | None = None  # `spent` when it last merged
    rework: int = 0

    def bucket(self) -> Bucket:
        if self.asking or self.held:
            return "waiting_for_human"
        if self.open_subs:
            return "waiting_for_queue"
        return "rework" if self.red else "active"

    def advance(self, ts: float) -> None:
        if ts > self.last:
            self.spent[self.bucket()] += ts - self.last
            self.last = ts


def compute(events: list[Event], now: float | None = None) -> dict[str, Any]:
    """The report's numbers from the event log as of `now` (default: the last event's time)."""
    clocks: dict[str, _Clock] = {}
    submitted: dict[str, tuple[str, float]] = {}  # correlation -> (worker, ts)
    judged: set[str] = set()  # correlations whose first verdict was counted
    first_runs = first_green = submissions = 0
    waits: list[float] = []
    stops: list[float] = []
    stopped_at: float | None = None
    for ev in events:
        w, corr = ev.worker, ev.correlation
        if ev.kind == "line-stopped":
            stopped_at = ev.ts
        elif ev.kind == "line-resumed" and stopped_at is not None:
            stops.append(ev.ts - stopped_at)
            stopped_at = None
        if not w:
            continue
        if ev.kind == "spawned" and w not in clocks:
            clocks[w] = _Clock(start=ev.ts, last=ev.ts)
            continue
        c = clocks.get(w)
        if c is None:
            continue
        c.advance(ev.ts)
        if ev.kind == "submitted" and corr:
            submissions += 1
            submitted[corr] = (w, ev.ts)
            c.open_subs.add(corr)
            c.red = False
        elif ev.kind == "held" and corr:
            c.held.add(corr)
        elif ev.kind == "approved" and corr:
            c.held.discard(corr)
        elif ev.kind in ("andon", "answered"):
            c.asking = ev.kind == "andon"
        elif ev.kind == "cancelled" and corr:
            c.open_subs.discard(corr)
            c.held.discard(corr)
        elif ev.kind in ENDED:
            c.ended = True
        elif ev.kind in VERDICTS:
            if corr in submitted:
                _, t0 = submitted.pop(corr)
                waits.append(ev.ts - t0)
            if corr and corr not in judged and ev.kind != "conflict":
                judged.add(corr)
                first_runs += 1
                first_green += ev.kind == "merged"
            if corr:
                c.open_subs.discard(corr)
                c.held.discard(corr)
            if ev.kind == "merged":
                c.merged_at, c.red = ev.ts, False
                c.at_merge = dict(c.spent)
            else:
                c.red = True
                if c.merged_at is None:
                    c.rework += 1
    end = now if now is not None else (events[-1].ts if events else 0.0)
    for c in clocks.values():
        if c.merged_at is None and not c.ended:
            c.advance(end)
    tasks: list[dict[str, Any]] = []
    time_split: dict[str, dict[str, float]] = {}
    in_progress: list[dict[str, Any]] = []
    for w, c in clocks.items():
        spent = c.at_merge if c.at_merge is not None else c.spent
        time_split[w] = {b: round(spent[b], 3) for b in BUCKETS}
        if c.merged_at is not None:
            lead = c.merged_at - c.start
            active = spent["active"]
            tasks.append(
                {
                    "worker": w,
                    "lead_time": round(lead, 3),
                    "active": round(active, 3),
                    "waiting": round(spent["waiting_for_queue"] + spent["waiting_for_human"], 3),
                    "flow_efficiency": round(active / lead, 3) if lead else None,
                    "rework_rounds": c.rework,
                }
            )
        elif not c.ended:
            in_progress.append({"worker": w, "age": round(end - c.start, 3), "now": c.bucket()})
    n = len(tasks)
    totals = {b: round(sum(t[b] for t in time_split.values()), 3) for b in BUCKETS}
    return {
        "tasks": tasks,
        "merged": n,
        "lead_time_p50": _r(percentile([t["lead_time"] for t in tasks], 0.5)),
        "flow_efficiency": _r(
            statistics.mean([t["flow_efficiency"] for t in tasks if t["flow_efficiency"] is not None])
        )
        if n
        else None,
        "submissions": submissions,
        "first_gate_runs": first_runs,
        "first_pass_green": first_green,
        "first_pass_yield": _r(first_green / first_runs) if first_runs else None,
        "rework_rounds": sum(t["rework_rounds"] for t in tasks),
        "time": time_split,
        "time_total": totals,
        "in_progress": in_progress,
        "blocked": [p["worker"] for p in in_progress if p["now"] == "waiting_for_human"],
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
    import time

    data = compute(fac.store.events(), now=time.time())
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
        f"first-pass yield: {pct(data['first_pass_yield'])} ({data['first_pass_green']} of "
        f"{data['first_gate_runs']} first gate runs green; {data['submissions']} submissions)",
        f"rework rounds: {data['rework_rounds']}   queue wait p50/p95: {s(data['queue_wait_p50'])} / "
        f"{s(data['queue_wait_p95'])} over {data['verdicts']} verdicts",
        f"line stops: {data['line_stops']}   stopped for {s(data['line_stopped_seconds'])}   "
        f"MTTR: {s(data['mttr'])}",
    ]
    tot = data["time_total"]
    lines.append(
        f"time: active {s(tot['active'])}   rework (red) {s(tot['rework'])}   "
        f"waiting for the queue {s(tot['waiting_for_queue'])}   "
        f"waiting for a human {s(tot['waiting_for_human'])}"
    )
    wip = data["in_progress"]
    blocked = data["blocked"]
    lines.append(
        f"work in progress: {len(wip)}"
        + (f" ({', '.join(p['worker'] for p in wip)})" if wip else "")
        + f"   blocked (waiting for a human): {len(blocked)}"
        + (f" ({', '.join(blocked)})" if blocked else "")
    )
    if data["tasks"]:
        rows = []
        for t in data["tasks"]:
            split = data["time"][t["worker"]]
            rows.append(
                [
                    t["worker"],
                    s(t["lead_time"]),
                    s(t["active"]),
                    s(split["rework"]),
                    s(split["waiting_for_queue"]),
                    s(split["waiting_for_human"]),
                    pct(t["flow_efficiency"]),
                    str(t["rework_rounds"]),
                ]
            )
        head = ["TASK (WORKER)", "LEAD", "ACTIVE", "RED", "QUEUE", "HUMAN", "EFFICIENCY", "REWORK"]
        lines += ["", table(rows, head)]
    if data.get("tokens"):
        rows = [[w, str(t["in"]), str(t["out"]), f"${t['cost']:.4f}"] for w, t in data["tokens"].items()]
        lines += ["", table(rows, ["WORKER", "TOKENS IN", "TOKENS OUT", "COST"])]
    return "\n".join(lines)
