"""The factory's tmux session: `fac up` starts it with fac's own windows, `fac down` stops it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from supervisor import worktrees
from supervisor.errors import FacError
from supervisor.factory import Factory

SUPERVISOR_WINDOW = "supervisor"
QUEUE_WINDOW = "merge-queue"


def own_windows(fac: Factory) -> dict[str, list[str]]:
    """fac's own windows: name -> argv. They run this Python, so the pane needs no PATH setup."""
    py = [sys.executable, "-m", "supervisor"]
    return {SUPERVISOR_WINDOW: [*py, "supervise"], QUEUE_WINDOW: [*py, "queue", "run"]}


def window_env(fac: Factory) -> dict[str, str]:
    env = {"FAC_ROOT": str(fac.root)}
    if os.environ.get("FAC_TMUX_SOCKET"):
        env["FAC_TMUX_SOCKET"] = os.environ["FAC_TMUX_SOCKET"]
    return env


def up(fac: Factory) -> dict[str, Any]:
    """Create the session and any of fac's windows that are missing; idempotent."""
    panes = {p.window_name: p for p in fac.tmux.panes(fac.session)}
    existing = set(panes)
    started = []
    for name, argv in own_windows(fac).items():
        p = panes.get(name)
        if p is not None and not p.dead:
            continue
        if p is not None:  # it died (killed, crashed): start it again in its own window
            fac.tmux.respawn(p.pane_id, str(fac.root), argv, window_env(fac))
            existing.discard(name)
        else:
            fac.tmux.new_window(fac.session, name, str(fac.root), argv, window_env(fac))
        started.append(name)
    fac.store.event("up", session=fac.session, started=started)
    return {"session": fac.session, "started": started, "already_running": sorted(existing)}


def down(fac: Factory, *, rm: bool = False, force: bool = False) -> dict[str, Any]:
    """Kill the session; workers become stopped. With `rm`, remove their worktrees and branches too."""
    from supervisor import workers

    ws = fac.store.workers()
    if rm and not force:
        dirty = [w.name for w in ws if worktrees.is_dirty(Path(w.worktree))]
        if dirty:
            raise FacError(
                f"worktrees with uncommitted changes: {', '.join(dirty)}",
                hint="commit them, or pass --force to discard them",
            )
    was_running = fac.tmux.has_session(fac.session)
    if was_running:
        fac.tmux.kill_session(fac.session)
    removed = []
    for w in ws:
        if rm:
            workers.kill(fac, w.name, rm=True, force=True)
            removed.append(w.name)
        elif w.state != "stopped":
            fac.store.update_worker(w.name, state="stopped")
    fac.store.event("down", session=fac.session, removed=removed)
    return {"session": fac.session, "was_running": was_running, "removed": removed}
