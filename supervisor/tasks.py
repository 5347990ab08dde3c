"""Kanban: a queue of tasks pulled by new workers only while the factory is under its WIP limit."""

from __future__ import annotations

import time
from typing import Any

from supervisor import roles
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.model import TASK_RETRYABLE, Task, TaskState, WorkerState, check_task_size, task_removable

# Workers that occupy a WIP slot: everything that is not finished or parked.
FINISHED = ("done", "exited", "merged", "stopped")


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
    check_task_size(text)
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


def get(fac: Factory, tid: int) -> Task:
    t = fac.store.task(tid)
    if t is None:
        known = ", ".join(str(t.id) for t in all_tasks(fac)) or "none"
        raise FacError(f"no task {tid}", hint=f"tasks: {known} (fac task ls)")
    return t


def outcome(worker: WorkerState | None, name: str, submitted: bool) -> tuple[TaskState, str | None] | None:
    """How an assigned task ends, from its worker's state: None while the worker may still deliver.

    `worker` is None when the worker's row is gone; `submitted` says whether it has a submission the
    queue has not decided yet (a worker that submitted and exited waits for its verdict).
    """
    if worker in ("merged", "done"):
        return "done", None
    if worker is None:
        return "abandoned", f"its worker {name} was removed before its work merged"
    if worker == "stopped":
        return "abandoned", f"its worker {name} was stopped before its work merged"
    if worker == "exited" and not submitted:
        return "abandoned", f"its worker {name} exited without its work merged"
    return None


def settle(fac: Factory) -> list[Task]:
    """End the assigned tasks whose workers are done with them: done, or abandoned with the reason."""
    open_by = {e.worker for e in fac.store.queue(("queued", "testing", "held"))}
    ended = []
    for t in all_tasks(fac):
        if t.state != "assigned" or not t.worker:
            continue
        w = fac.store.worker(t.worker)
        result = outcome(w.state if w else None, t.worker, t.worker in open_by)
        if result is None:
            continue
        state, reason = result
        with fac.store.tx() as db:
            if fac.store.set_task(t.id, state, db=db, reason=reason):
                kind = "task-done" if state == "done" else "task-abandoned"
                fac.store.event(kind, t.worker, correlation=f"t{t.id}", db=db, task=t.id, reason=reason)
                ended.append(t)
    return ended


def retry(fac: Factory, tid: int) -> Task:
    """Put a failed or abandoned task back in todo; the supervisor pulls it again with a new worker."""
    t = get(fac, tid)
    if t.state not in TASK_RETRYABLE:
        raise FacError(
            f"task {tid} is {t.state}: only a failed or abandoned task can be retried",
            hint="fac task ls shows each task's state",
        )
    with fac.store.tx() as db:
        fac.store.set_task(tid, "todo", db=db, worker=None, reason=None)
        fac.store.event("task-retried", None, correlation=f"t{tid}", db=db, task=tid, was=t.state)
    return get(fac, tid)


def remove(fac: Factory, tid: int) -> Task:
    """Delete a task that no worker works on."""
    t = get(fac, tid)
    if not task_removable(t.state):
        raise FacError(
            f"task {tid} is assigned to worker {t.worker}",
            hint=f"fac kill {t.worker} first; the task is then abandoned and can be removed",
        )
    with fac.store.tx() as db:
        fac.store.remove_task(tid, db=db)
        fac.store.event("task-removed", None, correlation=f"t{tid}", db=db, task=tid, text=t.text)
    return t


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

    settle(fac)
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
                fac.store.set_task(t.id, "failed", db=db, reason=e.message)
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
