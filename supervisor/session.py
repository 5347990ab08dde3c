"""The factory's tmux session: `fac up` starts it with fac's own windows, `fac down` stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor import health, isolation, repo, worktrees
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.health import QUEUE_WINDOW, SUPERVISOR_WINDOW, own_windows

__all__ = ["QUEUE_WINDOW", "SUPERVISOR_WINDOW", "down", "own_windows", "up"]


def up(fac: Factory) -> dict[str, Any]:
    """Create the session and any of fac's windows that are missing or dead; idempotent.

    A session of the same name that this factory did not create is never adopted (it raises).
    """
    fac.session_running()
    panes = {p.window_name: p for p in fac.panes()}
    started = []
    for name in own_windows(fac):
        p = panes.get(name)
        if p is not None and not p.dead:
            continue
        health.start(fac, name, panes)  # a dead one (killed, crashed) starts again in its own window
        started.append(name)
    already = sorted(n for n in panes if n in own_windows(fac) and n not in started)
    fac.store.event("up", session=fac.session, started=started)
    return {
        "session": fac.session,
        "started": started,
        "already_running": already,
        "agents_isolation": isolation.status(),
    }


def down(fac: Factory, *, rm: bool = False, force: bool = False) -> dict[str, Any]:
    """Kill the session; workers become stopped. With `rm`, remove their worktrees and branches too.

    `rm` refuses uncommitted changes and branches with commits main does not have, unless `force`;
    each dropped branch's last sha is returned so it can be recovered.
    """
    from supervisor import workers

    ws = fac.store.workers()
    if rm and not force:
        dirty = [w.name for w in ws if worktrees.is_dirty(Path(w.worktree))]
        if dirty:
            raise FacError(
                f"worktrees with uncommitted changes: {', '.join(dirty)}",
                hint="commit them, or pass --force to discard them",
            )
        unmerged = []
        main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}") or f"refs/heads/{fac.main}"
        for w in ws:
            # An agent's own repository holds commits it has not submitted yet: count those too.
            tree = Path(w.worktree)
            where = tree if worktrees.is_agent_repo(tree) else fac.root
            head = worktrees.head(fac.root, tree, w.branch)
            n = repo.unmerged_count(where, head, main) if head else 0
            if n:
                unmerged.append(f"{w.branch} ({n} commit{'s' if n != 1 else ''} not on {fac.main})")
        if unmerged:
            raise FacError(
                f"branches with unmerged commits: {', '.join(unmerged)}",
                hint="submit them (fac submit --worker NAME), keep them with plain `fac down`, "
                "or pass --force to drop them (each branch's last sha is printed for recovery)",
            )
    was_running = fac.session_running()  # another factory's session of this name is never killed
    if was_running:
        fac.tmux.kill_session(fac.session)
    removed = []
    dropped = []
    for w in ws:
        if rm:
            res = workers.kill(fac, w.name, rm=True, force=True)
            removed.append(w.name)
            dropped.append({"worker": w.name, "branch": w.branch, "last_sha": res.get("last_sha")})
        elif w.state != "stopped":
            fac.store.update_worker(w.name, state="stopped")
    fac.store.event("down", session=fac.session, removed=removed)
    return {"session": fac.session, "was_running": was_running, "removed": removed, "dropped": dropped}
