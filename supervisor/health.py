"""The health of fac's own processes: the supervisor and the merge queue, and bringing a dead one back.

Each holds an flock in `.fac/` for as long as it lives (locks.py), so "is it running" is asked of
the kernel, not guessed from the screen: a process killed with `kill -9` lets go of its lock at
once. Each one watches the other (the supervisor restarts a dead queue window, the queue window a
dead supervisor), so a single crash never leaves submissions waiting forever.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from supervisor import locks, restart_policy
from supervisor.factory import Factory
from supervisor.tmux import PaneInfo

SUPERVISOR_WINDOW = "supervisor"
QUEUE_WINDOW = "merge-queue"
WINDOW_ENV = "FAC_WINDOW"  # set in fac's own windows: which one this process is
LOCK_FILES = {SUPERVISOR_WINDOW: "supervisor.lock", QUEUE_WINDOW: "queue.lock"}
WHAT = {SUPERVISOR_WINDOW: "the supervisor", QUEUE_WINDOW: "the merge queue"}

WindowState = Literal["alive", "dead", "missing"]


def own_windows(fac: Factory) -> dict[str, list[str]]:
    """fac's own windows: name -> argv. They run this Python, so the pane needs no PATH setup."""
    py = [sys.executable, "-m", "supervisor"]
    return {SUPERVISOR_WINDOW: [*py, "supervise"], QUEUE_WINDOW: [*py, "queue", "run"]}


def window_env(fac: Factory, name: str) -> dict[str, str]:
    env = {"FAC_ROOT": str(fac.root), WINDOW_ENV: name}
    if os.environ.get("FAC_TMUX_SOCKET"):
        env["FAC_TMUX_SOCKET"] = os.environ["FAC_TMUX_SOCKET"]
    return env


@dataclass(frozen=True)
class ProcessHealth:
    """One of fac's own processes as the kernel (its lock) and tmux (its window) see it."""

    name: str
    pid: int | None  # the holder of its lock: None when no such process runs
    window: WindowState

    @property
    def running(self) -> bool:
        return self.pid is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "running": self.running}

    def describe(self) -> str:
        return describe(self.pid, self.window)


def describe(pid: int | None, window: str) -> str:
    """One process's liveness in a few words, for `fac status` and `fac doctor`."""
    if pid is not None:
        return f"running (pid {pid})" + ("" if window == "alive" else " outside its window")
    return {"alive": "starting (no lock yet)", "dead": "DEAD (its window's process exited)"}.get(
        window, "not running (no window)"
    )


def needs_restart(p: ProcessHealth) -> bool:
    """A process is brought back when nothing holds its lock and its window runs nothing.

    A live window without the lock is one still starting (or waiting for a lock a human's
    `fac queue run` holds elsewhere): left alone.
    """
    return not p.running and p.window != "alive"


def window_state(p: PaneInfo | None) -> WindowState:
    if p is None:
        return "missing"
    return "dead" if p.dead else "alive"


def process(fac: Factory, name: str, panes: dict[str, PaneInfo]) -> ProcessHealth:
    return ProcessHealth(name, locks.holder(fac.fac_dir / LOCK_FILES[name]), window_state(panes.get(name)))


def processes(fac: Factory, panes: dict[str, PaneInfo] | None = None) -> list[ProcessHealth]:
    """The supervisor and the merge queue, now. `panes`: the session's, when the caller has them."""
    if panes is None:
        panes = {p.window_name: p for p in fac.panes()}
    return [process(fac, name, panes) for name in (SUPERVISOR_WINDOW, QUEUE_WINDOW)]


def start(fac: Factory, name: str, panes: dict[str, PaneInfo]) -> None:
    """Start fac's window `name`: respawn its dead pane, or create the window (and the session)."""
    argv = own_windows(fac)[name]
    p = panes.get(name)
    if p is not None:
        fac.tmux.respawn(p.pane_id, str(fac.root), argv, window_env(fac, name))
    else:
        fac.new_window(name, str(fac.root), argv, window_env(fac, name))


@dataclass
class Keeper:
    """Keeps one of fac's own processes alive from the other one, with the agents' restart backoff."""

    fac: Factory
    name: str
    by: str
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None  # a restart waiting out its backoff
    gave_up: bool = False

    def check(self, panes: dict[str, PaneInfo] | None = None, now: float | None = None) -> str | None:
        """Restart the process when it is dead and its backoff allows; returns what was done, if anything."""
        now = time.time() if now is None else now
        if panes is None:
            if not self.fac.session_running():
                return None  # the session is down (fac down): nothing to keep alive
            panes = {p.window_name: p for p in self.fac.panes()}
        p = process(self.fac, self.name, panes)
        if not needs_restart(p):
            if p.running:
                self.gave_up, self.restart_at = False, None
            return None
        if self.gave_up:
            return None
        if self.restart_at is None:
            cfg = self.fac.config.supervisor
            decision = restart_policy.decide(
                self.crashes,
                now,
                restart_delays=cfg.restart_delays,
                crash_loop=cfg.crash_loop,
                crash_window=cfg.crash_window,
            )
            self.crashes = list(decision.crashes)
            if decision.action is restart_policy.Action.GIVE_UP:
                self.gave_up = True
                self.fac.store.event(
                    "process-crash-loop", None, process=self.name, by=self.by, crashes=len(self.crashes)
                )
                n = len(self.crashes)
                return f"{WHAT[self.name]} keeps dying ({n} times): not restarting it; see `fac doctor`"
            self.restart_at = decision.restart_at
        if self.restart_at is not None and now < self.restart_at:
            return None
        self.restart_at = None
        start(self.fac, self.name, panes)
        self.fac.store.event(
            "process-restarted",
            None,
            process=self.name,
            by=self.by,
            window=p.window,
            restarts=len(self.crashes),
        )
        return f"{WHAT[self.name]} was dead ({p.window} window): restarted it"
