"""The supervisor window's live view (rich): workers, line, queue, open questions, tasks."""

from __future__ import annotations

import time
from typing import Any

from supervisor import health, line, tasks
from supervisor.factory import Factory
from supervisor.text import clock, short_sha, typed

STATE_STYLE = {
    "working": "green",
    "idle": "cyan",
    "queued": "blue",
    "testing": "blue",
    "merged": "bold green",
    "done": "dim green",
    "exited": "yellow",
    "red": "bold red",
    "conflict": "bold yellow",
    "needs-human": "bold magenta",
    "crashed": "red",
    "stopped": "dim",
    "waiting-for-check": "blue",
    "waiting-for-human": "magenta",
}


def verdict_cell(state: str, verdict: str) -> str:
    """The dashboard's "last verdict" cell: the entry's state, then the verdict unless it already
    starts with that state (a red entry's verdict reads `red: tests`, not `red: red: tests`)."""
    if not verdict:
        return state
    if verdict == state or verdict.startswith(f"{state}:") or verdict.startswith(f"{state} ("):
        return verdict
    return f"{state}: {verdict}"


def snapshot(fac: Factory) -> dict[str, Any]:
    from supervisor import status
    from supervisor.queue import queue_rows
    from supervisor.queue.views import line_holds

    data = status.collect(fac)
    last: dict[str, str] = {}
    for row in queue_rows(fac):
        # a testing entry: how long it has been under test and the checks running now
        last[row["worker"]] = row["progress"] or verdict_cell(row["state"], row["last_verdict"])
    data["last_verdict"] = last
    data["line_holds"] = line_holds(fac)
    data["line"] = line.get(fac).as_dict()
    data["tasks"] = [t.__dict__ for t in tasks.all_tasks(fac) if t.state == "todo"]
    data["deltas_waiting"] = [v.id for v in tasks.waiting_deltas(fac)]
    data["worker_command"] = fac.config.supervisor.worker_command
    data["wip_limit"] = fac.config.supervisor.max_workers
    return data


def render(data: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    ln = data["line"]
    if ln["state"] == "stopped":
        head = Text(
            f"LINE STOPPED since {clock(ln['since'])}: {ln['reason']}",
            style="bold white on red",
        )
    else:
        head = Text("line running", style="bold green")
    q = data["queue"]
    wip = sum(1 for w in data["workers"] if w["state"] not in tasks.FINISHED)
    head.append(
        f"   main {short_sha(data.get('main_sha'))}   queue {q['queued']} queued, "
        f"{q['testing']} testing, {q.get('held', 0)} held   WIP {wip}/{data['wip_limit']}"
    )
    if data.get("executor", {}).get("note"):
        head.append(f"   {data['executor']['note']}", style="bold yellow")
    table = Table(expand=True, show_edge=False)
    for col in ("worker", "role", "state", "process", "branch", "last verdict", "restarts"):
        table.add_column(col)
    for w in data["workers"]:
        table.add_row(
            w["name"],
            w["role"],
            Text(w["state"], style=STATE_STYLE.get(w["state"], "")),
            w["process"],
            w["branch"],
            data["last_verdict"].get(w["name"], ""),
            str(w.get("restarts", 0)),
        )
    procs = Text()
    for name, p in data.get("processes", {}).items():
        procs.append(
            f"{name}: {health.describe(p['pid'], p['window'])}   ", style="" if p["running"] else "bold red"
        )
    parts: list[Any] = [head, procs, table]
    isolated = data.get("agents_isolation", {})
    if isolated.get("warning"):
        parts.insert(1, Text(isolated["warning"], style="bold yellow"))
    for name, why in isolated.get("unconfined_workers", {}).items():
        parts.insert(1, Text(f"{name} is not isolated: {why}", style="bold yellow"))
    questions = [(w["name"], w["question"]) for w in data["workers"] if w.get("question")]
    if questions:
        qt = Text()
        for name, question in questions:
            qt.append(f"{name}: ", style="bold magenta")
            qt.append(f"{question}\n   " + typed(f'answer with: fac answer {name} "..."') + "\n")
        parts.append(Panel(qt, title="andon: open questions", border_style="magenta"))
    waiting = [(w["name"], w["todo"]) for w in data["workers"] if w.get("todo")]
    if waiting:
        wt = Text()
        for name, todo in waiting:
            wt.append(f"{name}: ", style="bold magenta")
            wt.append(typed(todo) + "\n")
        parts.append(Panel(wt, title="waiting for a human at the window", border_style="magenta"))
    if data.get("held"):
        ht = Text()
        for h in data["held"]:
            ht.append(f"{h['branch']} ", style="bold yellow")
            ht.append(f"at {h['sha'][:10]}: " + typed(f"approve with fac approve {h['branch']}") + "\n")
            for why in h["why"]:
                ht.append(f"   {why}\n")
        parts.append(Panel(ht, title="held for a human's approval", border_style="yellow"))
    for hold in data.get("line_holds", []):
        lt = Text(f"{hold['why']}\n")
        for e in hold["entries"]:
            lt.append(f"   {e['worker']} ", style="bold yellow")
            lt.append(f"{e['branch']} at {short_sha(e['sha'])} waits\n")
        parts.append(Panel(lt, title=f"held: {hold['reason']}", border_style="yellow"))
    if data["tasks"]:
        parts.append(
            Text("tasks waiting: " + "; ".join(f"#{t['id']} {t['text'][:40]}" for t in data["tasks"]))
        )
    if data["deltas_waiting"]:
        how = (
            "" if data["worker_command"] else " (a command-runtime worker needs [supervisor] worker_command)"
        )
        parts.append(Text("approved deltas waiting for a worker: " + ", ".join(data["deltas_waiting"]) + how))
    if data["checkout"]["note"]:
        parts.append(Text("note: " + data["checkout"]["note"], style="yellow"))
    return Panel(Group(*parts), title=f"fac {data['session']}  {time.strftime('%H:%M:%S')}")
