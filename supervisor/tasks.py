"""Kanban: a queue of tasks pulled by new workers only while the factory is under its WIP limit."""

from __future__ import annotations

import time
from typing import Any

from supervisor import roles
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import Task

# Workers that occupy a WIP slot: everything that is not finished or parked.
FINISHED = ("done", "merged", "stopped")


def add(
    fac: Factory,
    text: str,
    *,
    role: str = "worker",
    runtime: str | None = None,
    command: str | None = None,
    delta: str | None = None,
) -> int:
    if not text.strip():
        raise FacError("the task is empty", hint='fac task add "what to build"')
    spec = roles.get(fac.root, role)
    if (runtime or spec.runtime) == "command" and not (command or "").strip():
        # caught here, not when the supervisor pulls the task and its spawn fails
        raise FacError(
            f"a task for role {role!r} runs the command runtime and needs a command",
            hint='pass --cmd "bash ./agent.sh" (run in the worker\'s worktree),'
            " or --runtime claude|anthropic",
        )
    with fac.store.tx() as db:
        tid = fac.store.add_task(text, role, delta, runtime, command, db)
        fac.store.event("task-added", None, correlation=f"t{tid}", db=db, text=text, role=role)
    return tid


def all_tasks(fac: Factory) -> list[Task]:
    return fac.store.tasks()


def wip(fac: Factory) -> int:
    return sum(1 for w in fac.store.workers() if w.state not in FINISHED)


def _role_is_full(fac: Factory, role: str) -> bool:
    try:
        cap = roles.get(fac.root, role).max_instances
    except FacError:
        return False  # spawn reports it, and the task is parked
    live = [w for w in fac.store.workers() if w.role == role and w.state != "stopped"]
    return bool(cap) and len(live) >= cap


def pull(fac: Factory) -> list[dict[str, Any]]:
    """Spawn workers for waiting tasks, oldest first, while under `[supervisor] max_workers`."""
    from supervisor import workers

    limit = fac.config.supervisor.max_workers
    started = []
    for t in all_tasks(fac):
        if t.state != "todo":
            continue
        if wip(fac) >= limit:
            break
        if _role_is_full(fac, t.role):
            continue  # waits, like a task over the WIP limit
        try:
            res = workers.spawn(fac, t.role, task=t.text, runtime=t.runtime, command=t.command, delta=t.delta)
        except FacError as e:
            # Parked, not retried: a spawn that failed fails again on every pass (a log flood), and
            # one bad task must not hold back the tasks behind it.
            with fac.store.tx() as db:
                fac.store.set_task(t.id, "failed", db=db)
                fac.store.event("task-pull-failed", None, correlation=f"t{t.id}", db=db, error=str(e))
            continue
        with fac.store.tx() as db:
            fac.store.set_task(t.id, "assigned", db=db, worker=res["name"])
            fac.store.event("task-pulled", res["name"], correlation=f"t{t.id}", db=db, task=t.id)
        started.append(res)
    if wip(fac) < limit:
        started += pull_deltas(fac, limit)
    return started


PULL_RETRY = 300.0  # seconds before a delta whose spawn failed is tried again
_PULL_FAILED: dict[str, float] = {}


def waiting_deltas(fac: Factory) -> list[Any]:
    """Approved deltas that no worker and no queued task has taken yet, oldest id first."""
    from supervisor import deltas

    try:
        views = deltas.views(fac)
    except FacError:
        return []
    taken = {t.delta for t in all_tasks(fac) if t.delta and t.state in ("todo", "assigned")}
    return [
        v for v in views if v.status == "approved" and not (v.store or {}).get("worker") and v.id not in taken
    ]


def pull_deltas(fac: Factory, limit: int) -> list[dict[str, Any]]:
    """Kanban pull of approved deltas: a new worker per delta while under the WIP limit.

    A worker role that runs commands needs `[supervisor] worker_command` to know what to run;
    without it approved deltas wait (the dashboard says so) rather than failing.
    """
    from supervisor import workers

    started: list[dict[str, Any]] = []
    waiting = waiting_deltas(fac)
    if not waiting:
        return started
    role = roles.get(fac.root, "worker")
    command = fac.config.supervisor.worker_command if role.runtime == "command" else None
    if role.runtime == "command" and not command:
        return started
    for v in waiting:
        if wip(fac) >= limit or _role_is_full(fac, "worker"):
            break
        if time.time() - _PULL_FAILED.get(v.id, 0.0) < PULL_RETRY:
            continue  # it failed a moment ago; the event log has why
        try:
            res = workers.spawn(
                fac, "worker", task=f"Implement delta {v.id}: {v.delta.title}", command=command, delta=v.id
            )
        except FacError as e:
            _PULL_FAILED[v.id] = time.time()
            fac.store.event("delta-pull-failed", None, correlation=v.id, error=str(e))
            continue
        fac.store.event("delta-pulled", res["name"], correlation=v.id)
        started.append(res)
    return started
