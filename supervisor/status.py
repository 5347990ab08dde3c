"""`fac status`: one snapshot of the factory for humans (a table) and scripts (JSON)."""

from __future__ import annotations

import time
from typing import Any

from supervisor import availability, health, isolation, line, repo
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.text import short_sha, typed, with_iso_times


def collect(fac: Factory) -> dict[str, Any]:
    from supervisor import workers

    repo.require_git()  # heads and the checkout come from git: say so plainly when it is missing
    conflict = ""
    try:
        running = fac.session_running()
    except FacError as err:  # tmux missing, or a session of this name that is not ours
        running, conflict = False, err.message
    panes = {p.window_name: p for p in fac.panes()} if running else {}
    counts: dict[str, int] = {}
    held = []
    for e in fac.store.queue(("queued", "testing", "held")):
        counts[e.state] = counts.get(e.state, 0) + 1
        if e.state == "held":
            v = e.verdict or {}
            why = v.get("why") or [f"{p}: needs approval" for p in v.get("paths", [])]
            held.append({"id": e.id, "worker": e.worker, "branch": e.branch, "sha": e.sha, "why": why})
    return {
        "root": str(fac.root),
        "session": fac.session,
        "session_running": running,
        "session_conflict": conflict,
        "processes": {p.name: p.as_dict() for p in health.processes(fac, panes)},
        "agents_isolation": isolation.status({w.name: w.runtime for w in fac.store.workers()}),
        "main": fac.main,
        "main_sha": repo.rev_parse(fac.root, f"refs/heads/{fac.main}"),
        "checkout": checkout_state(fac),
        "queue": {
            "queued": counts.get("queued", 0),
            "testing": counts.get("testing", 0),
            "held": counts.get("held", 0),
        },
        "held": held,
        "executor": executor_state(fac),
        "line": with_iso_times(line.get(fac).as_dict(), "since"),
        "workers": [with_iso_times(v.as_dict(), "updated_at") for v in workers.views(fac, panes)],
    }


def executor_state(fac: Factory) -> dict[str, Any]:
    """Where gate suites run and whether the queue can reach it: after a failure (a Dask scheduler
    that does not answer) `note` says why and when the queue tries again."""
    now = time.time()
    a = availability.Availability(*fac.store.executor_state())
    return {"kind": fac.config.executor.kind, **a.as_dict(now), "note": availability.describe(a, now)}


def checkout_state(fac: Factory) -> dict[str, Any]:
    """Where the human's checkout of the factory root is relative to main."""
    branch = repo.current_branch(fac.root)
    head = repo.rev_parse(fac.root, "HEAD")
    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    state: dict[str, Any] = {"branch": branch, "head": head, "behind_main": 0, "note": ""}
    if branch is None and head and main and head != main and repo.is_ancestor(fac.root, head, main):
        behind = int(repo.git(fac.root, "rev-list", "--count", f"{head}..{main}") or 0)
        state["behind_main"] = behind
        state["note"] = (
            f"main moved ahead of your checkout by {behind} commit(s) while you had local edits in files "
            f"it changed; your checkout is detached at {head[:10]} with your edits intact: commit or "
            f"stash them, then `git checkout {fac.main}`"
        )
    return state


def render(data: dict[str, Any]) -> str:
    from supervisor.text import table

    state = "up" if data["session_running"] else "down"
    q = data["queue"]
    main = short_sha(data.get("main_sha")) if data.get("main_sha") else "(missing)"
    lines = [
        f"factory {data['root']}  session {data['session']} ({state})  {data['main']} {main}  "
        f"queue: {q['queued']} queued, {q['testing']} testing, {q.get('held', 0)} held"
    ]
    if data.get("session_conflict"):
        lines.append(f"warning: {data['session_conflict']}: set [tmux] session in factory.toml")
    isolated = data.get("agents_isolation", {})
    if isolated.get("warning"):
        lines.append(f"warning: {isolated['warning']}")
    for name, why in isolated.get("unconfined_workers", {}).items():
        lines.append(f"warning: {name} is not isolated: {why}")
    procs = data.get("processes", {})
    if procs:
        lines.append(
            "  ".join(f"{name}: {health.describe(p['pid'], p['window'])}" for name, p in procs.items())
        )
        dead = [n for n, p in procs.items() if not p["running"]]
        if dead and data["session_running"]:
            lines.append(
                typed(
                    f"warning: {' and '.join(dead)} not running: `fac up` starts "
                    f"{'it' if len(dead) == 1 else 'them'} again; `fac doctor` checks the rest"
                )
            )
    if not data.get("main_sha"):
        lines.append(
            f"warning: branch {data['main']} does not exist: set [factory] main in factory.toml "
            "to the branch the queue guards"
        )
    if data.get("executor", {}).get("note"):
        lines.append(f"queue: {data['executor']['note']}")
    ln = data["line"]
    if ln["state"] == "stopped":
        lines.append(
            f"LINE STOPPED: {ln['reason']}  "
            + typed("(fix main; `fac verify` or `fac line resume` restarts it)")
        )
    questions = [w for w in data["workers"] if w.get("question")]
    for w in questions:
        lines.append(
            f"andon: {w['name']} asks: {w['question']}  " + typed(f'(answer: fac answer {w["name"]} "...")')
        )
    for w in data["workers"]:
        if w.get("todo"):
            lines.append(f"waiting-for-human: {w['name']}: " + typed(w["todo"]))
    for h in data.get("held", []):
        lines.append(
            f"held: {h['branch']} at {h['sha'][:10]} " + typed(f"waits for `fac approve {h['branch']}`:")
        )
        lines.extend(f"  {why}" for why in h["why"])
    if data["checkout"]["note"]:
        lines.append("note: " + data["checkout"]["note"])
    ws = data["workers"]
    if not ws:
        lines.append(typed('no workers: start one with `fac spawn worker --cmd "..."`'))
    else:
        rows = [
            [
                w["name"],
                w["role"],
                w["branch"],
                w["state"],
                w["process"],
                w["window"] or "-",
                short_sha(w["head"]),
            ]
            for w in ws
        ]
        lines.append(table(rows, ["WORKER", "ROLE", "BRANCH", "STATE", "PROCESS", "WINDOW", "HEAD"]))
    return "\n".join(lines)
