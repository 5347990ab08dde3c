"""The supervisor: deterministic code that keeps every agent alive and the line honest.

It reconciles what the store says against what tmux shows: a crashed agent is restarted in its own
worktree with backoff (a crash loop pulls the andon cord), unacknowledged messages are pasted again
until a receipt arrives, a red main stops the line and every worker hears of it, and waiting tasks
are pulled by new workers while the factory is under its WIP limit.

It is event-driven: inotify (wake.py) on `.fac/` and on the branch refs, and a tmux `pane-died`
hook that touches `.fac/wake`, wake it at once; a slow tick (`[supervisor] tick`) is the safety net.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from supervisor import (
    andon,
    channel,
    health,
    line,
    locks,
    messages,
    repo,
    restart_policy,
    spawner,
    tasks,
    wake,
    workers,
)
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.hooks import workers_state
from supervisor.model import Worker, exit_state
from supervisor.restart_policy import Action
from supervisor.tmux import PaneInfo

# States in which the supervisor leaves a worker's process alone.
PARKED = ("stopped", "done", "exited", "needs-human")
STARTING_GRACE = 60.0
UNSETTLED_GRACE = 5.0  # seconds to wait for tmux to learn a dead pane's exit status


FIXER_GONE = ("stopped", "done", "exited", "merged")  # a fixer in these states is not working on main


def stop_notice(reason: str, main: str, fixers: list[str]) -> str:
    """What every worker is told when the line stops: the reason, and who (if anyone) is fixing it."""
    if fixers:
        who = f"{', '.join(fixers)} (fixer) {'is' if len(fixers) == 1 else 'are'} on it"
    else:
        who = "no fixer is on it yet: a human must fix main (or `fac spawn fixer`), then `fac verify`"
    return (
        f"[fac] LINE STOPPED: {reason}\nDo not submit until {main} is green again; {who}. "
        "`fac status` shows the line."
    )


def resume_notice(main: str, sha: str | None) -> str:
    """What every worker is told when the line runs again."""
    at = f" at {sha[:10]}" if sha else ""
    return f"[fac] LINE RUNNING again: {main} is green{at}; submit as usual."


def how_it_ended(p: PaneInfo | None) -> str:
    """How a pane's process ended, in words (a crash's reason in the log and the andon question)."""
    if p is None:
        return "no window"
    if p.dead_signal:
        return f"killed by signal {p.dead_signal}"
    if p.dead_status is None:
        return "exit ?"
    # the shell's own codes: what a human should read instead of a bare number
    meaning = {126: " (not executable)", 127: " (command not found)"}.get(p.dead_status, "")
    return f"exit {p.dead_status}{meaning}"


def channel_run(root: Path, worktree: Path | None, peer: str, argv: list[str], cwd: str) -> channel.Run:
    """How the supervisor runs `fac ARGV` for `peer`: as that worker, in its worktree (or the
    directory of it the client stood in), with the supervisor's own environment."""
    where = worktree or root
    try:
        inside = Path(cwd).resolve()
        if worktree is not None and inside.is_dir() and inside.is_relative_to(worktree.resolve()):
            where = inside
    except (OSError, ValueError):
        pass
    env = channel.executor_env(os.environ, peer, {"FAC_ROOT": str(root)})
    return channel.Run([sys.executable, "-m", "supervisor", *argv], env, str(where))


class SpawnerProcess:
    """The warm spawner's process (spawner.py), as the supervisor keeps it: started with the
    supervisor, started again at its next pass when it died, stopped with it (and it stops itself
    when the supervisor is gone)."""

    def __init__(self, fac_dir: Path) -> None:
        self.path = fac_dir / spawner.DIR_NAME / spawner.SOCKET_NAME
        self.log = fac_dir / spawner.DIR_NAME / spawner.LOG_NAME
        self._proc: subprocess.Popen[bytes] | None = None
        self._not_before = 0.0
        self._kept = False  # started by the supervisor's run (a pass alone never starts one)

    def start(self) -> None:
        self._kept = True
        self.ensure()

    def ensure(self) -> bool:
        """Start it again unless it runs; True when this call started it. One that ended within a
        minute of its start waits a minute before the next try (a spawner that cannot start is only
        a slower `fac spawn`, never a loop of processes)."""
        if not self._kept or (self._proc is not None and self._proc.poll() is None):
            return False
        now = time.monotonic()
        if now < self._not_before:
            return False
        self._not_before = now + 60.0
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            argv = [sys.executable, "-m", "supervisor", spawner.SERVE_ARG, str(self.path), str(self.log)]
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        return True

    def stop(self) -> None:
        self._kept = False
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.path.unlink(missing_ok=True)


class Supervisor:
    def __init__(
        self,
        fac: Factory,
        *,
        say: Callable[[str], None] | None = None,
        on_reconcile: Callable[[], None] | None = None,
        keep: tuple[str, ...] = (),
    ) -> None:
        """`keep`: fac's own windows to bring back when they die (in its window: the merge queue's)."""
        self.fac = fac
        self.keepers = [health.Keeper(fac, name, by="supervisor") for name in keep]
        self.cfg = fac.config.supervisor
        self.say = say or (lambda _m: None)
        self.on_reconcile = on_reconcile
        self.wake = threading.Event()
        self._lock_fd: int | None = None
        self._watch: wake.Watch | None = None
        self._line_notified = -1.0
        self._line_for_env = False
        self._main_seen: str | None = None
        self._verifying = False
        self._unsettled: dict[str, float] = {}
        self._restarted = False
        self._channel: channel.Server | None = None
        self._worktrees: dict[str, Path] = {}
        self._spawner = SpawnerProcess(fac.fac_dir)

    # --- lifecycle ---

    def lock(self) -> None:
        hint = "watch it with `fac attach supervisor`"
        self._lock_fd = locks.acquire(self.fac.fac_dir / "supervisor.lock", "the supervisor", hint)

    def unlock(self) -> None:
        locks.release(self._lock_fd)
        self._lock_fd = None

    def watch(self) -> None:
        """Wake on writes to the store, moves of branch refs, and dead panes."""
        refs = self.fac.root / ".git" / "refs" / "heads"
        self._watch = wake.watch([self.fac.fac_dir, refs], event=self.wake)
        if not self._watch.active:
            self.say(f"no inotify ({self._watch.reason}): polling every {self.cfg.tick:g}s instead")
        wake_file = self.fac.fac_dir / "wake"
        try:
            self.fac.tmux.set_hook(self.fac.session, "pane-died", f"run-shell -b 'touch \"{wake_file}\"'")
        except FacError:
            pass  # no session yet: the tick still notices dead panes

    def run(self, *, should_stop: Callable[[], bool] | None = None) -> None:
        self.lock()
        try:
            self.watch()
            self._channel = channel.Server(self._plan, say=self.say)
            self._spawner.start()
            self.fac.store.event("supervisor-started", None, pid=os.getpid())
            self.say(f"supervisor up: tick {self.cfg.tick:g}s, WIP limit {self.cfg.max_workers}")
            while not (should_stop and should_stop()):
                self.wake.clear()
                try:
                    timeout = self.reconcile()
                except FacError as e:  # e.g. tmux briefly unavailable: report and keep going
                    self.say(f"reconcile failed: {e}")
                    timeout = self.cfg.tick
                if self.on_reconcile:
                    self.on_reconcile()
                self.wake.wait(timeout)
                # Coalesce a burst of file events into one pass.
                time.sleep(0.05)
        finally:
            self._spawner.stop()
            if self._channel is not None:
                self._channel.stop()
                self._channel = None
            if self._watch is not None:
                self._watch.stop()
            self.unlock()

    def _plan(self, peer: str, argv: list[str], cwd: str) -> channel.Run:
        # Runs in the channel's threads: only plain data here, never the store's connection.
        return channel_run(self.fac.root, self._worktrees.get(peer), peer, argv, cwd)

    def serve_channels(self, ws: list[Worker]) -> None:
        """One socket per worker in the store, at `.fac/runs/<worker>/fac.sock` (FAC_SOCKET in its pane)."""
        self._worktrees = {w.name: Path(w.worktree) for w in ws}
        if self._channel is not None:
            self._channel.sync({w.name: workers.socket_path(self.fac, w.name) for w in ws})

    # --- one pass ---

    def reconcile(self) -> float:
        """Bring the world in line with the store; returns how long it may sleep."""
        now = time.time()
        fac = self.fac
        panes = {p.window_name: p for p in fac.panes()}
        wake_at = now + self.cfg.tick
        self._restarted = False
        ws = fac.store.workers()
        self.serve_channels(ws)
        for w in ws:
            nxt = self.check_worker(w, panes.get(w.name), now)
            if nxt:
                wake_at = min(wake_at, nxt)
        if self._restarted:  # new processes in some panes: deliver against what tmux shows now
            panes = {p.window_name: p for p in fac.panes()}
        nxt = self.deliver(panes, now)
        if nxt:
            wake_at = min(wake_at, nxt)
        self.check_line()
        for keeper in self.keepers:
            try:
                # tmux's panes as this pass saw them (none: the session is down, the keeper asks)
                note = keeper.check(panes or None)
            except FacError as e:  # tmux briefly unavailable: the rest of the pass still runs
                note = f"could not check {health.WHAT[keeper.name]}: {e.message}"
            if note:
                self.say(note)
        for res in tasks.pull(fac):
            self.say(f"pulled a task: spawned {res['name']}")
        if self._spawner.ensure():
            self.say("the spawner had ended: started it again")
        return max(0.05, wake_at - time.time())

    def check_worker(self, w: Worker, p: PaneInfo | None, now: float) -> float | None:
        if w.state in PARKED:
            return None
        if w.state == "starting" and now - w.updated_at < STARTING_GRACE:
            return None  # spawn is still creating it; a spawn killed midway is handled after the grace
        alive = p is not None and not p.dead
        if alive:
            return None
        if p is not None and not p.settled:
            # Its end of file came before tmux reaped it: ask again in a moment, do not guess 0.
            first = self._unsettled.setdefault(p.pane_id, now)
            if now - first < UNSETTLED_GRACE:
                return now + 0.1
        if p is not None:
            self._unsettled.pop(p.pane_id, None)
        if p is not None and p.dead and p.dead_status == 0 and not p.dead_signal:
            ended = exit_state(w.state)
            workers_state(self.fac, w.name, ended, "finished", by="liveness", exit_status=0, ended=ended)
            self.say(f"{w.name}: finished (exit 0)" + ("" if ended == "done" else ", its work not merged"))
            return None
        status = how_it_ended(p)
        if w.state == "crashed" and w.next_restart is not None:
            if now >= w.next_restart:
                return self.restart(w, status)
            return w.next_restart
        cfg = self.cfg
        decision = restart_policy.decide(
            json.loads(w.crashes or "[]"),
            now,
            restart_delays=cfg.restart_delays,
            crash_loop=cfg.crash_loop,
            crash_window=cfg.crash_window,
            exit_status=None if p is None or p.dead_signal else p.dead_status,
        )
        crashes = list(decision.crashes)
        if decision.action in (Action.GIVE_UP, Action.CANNOT_RUN):
            loop = decision.action is Action.GIVE_UP
            with self.fac.store.tx() as db:
                self.fac.store.update_worker(w.name, db=db, crashes=json.dumps(crashes), next_restart=None)
                self.fac.store.event(
                    "crashed",
                    w.name,
                    db=db,
                    status=status,
                    crashes=len(crashes),
                    loop=loop,
                    cannot_run=not loop,
                )
            minutes = cfg.crash_window / 60
            question = (
                f"crash loop: {len(crashes)} crashes within {minutes:g} min (last: {status}); "
                f"read its pane (fac attach {w.name}), then `fac answer {w.name} ...` to restart it"
                if loop
                else f"its program cannot run ({status}): not restarting it; read its pane (fac attach "
                f"{w.name}), fix the command, then `fac kill {w.name} --rm` and spawn it again"
            )
            andon.ask(self.fac, w.name, question, by="supervisor")
            self.say(
                f"{w.name}: crash loop ({len(crashes)} crashes): andon cord pulled"
                if loop
                else f"{w.name}: its program cannot run ({status}): not restarting it; andon cord pulled"
            )
            return None
        delay = decision.delay
        with self.fac.store.tx() as db:
            now_state = self.fac.store.update_worker(
                w.name,
                db=db,
                state="crashed",
                by="liveness",
                crashes=json.dumps(crashes),
                next_restart=now + delay,
            )
            if now_state != "crashed":  # `fac kill` stopped (or removed) it meanwhile: not a crash
                return None
            self.fac.store.event(
                "crashed", w.name, db=db, status=status, crashes=len(crashes), restart_in=delay
            )
        self.say(f"{w.name}: crashed ({status}); restart in {delay:g}s")
        if decision.action is Action.RESTART_NOW:
            fresh = self.fac.store.worker(w.name)
            return self.restart(fresh, status) if fresh else None
        return now + delay

    def restart(self, w: Worker, status: str) -> float | None:
        try:
            res = workers.restart(self.fac, w.name, reason=status)
        except FacError as e:
            andon.ask(self.fac, w.name, f"cannot restart: {e.message}", by="supervisor")
            return None
        if res is None:  # stopped or removed (fac kill) while its restart was due
            return None
        self._restarted = True
        self.say(f"{w.name}: restarted (restart #{w.restarts + 1})")
        # What it had not acknowledged reaches the new process in this pass's delivery, once its
        # input is ready (delivery.plan), or through its SessionStart hook (Claude Code).
        return None

    def deliver(self, panes: dict[str, PaneInfo], now: float) -> float | None:
        """Receipts: each unacknowledged message is offered to `messages.deliver` (which pastes it when
        `delivery.plan` says so) until the runtime acknowledges it; returns when to look again."""
        wake_at: float | None = None
        live = {w.name for w in self.fac.store.workers() if w.state != "stopped"}
        for m in self.fac.store.unacked():
            if m.worker not in live:
                continue
            d = messages.deliver(self.fac, m.worker, m.id, now=now, panes=panes)
            if d.due is not None:
                wake_at = d.due if wake_at is None else min(wake_at, d.due)
        return wake_at

    def check_line(self) -> None:
        fac = self.fac
        state = line.get(fac)
        if state.stopped and state.since != self._line_notified:
            self._line_notified = state.since
            self.say(f"LINE STOPPED: {state.reason}")
            if line.stopped_for_env(state):
                # The environment is the human's to fix (agents cannot change project-container/):
                # no notice to the agents, no fixer; the queue restarts the line once it builds.
                self.say(
                    "  the system's environment does not build: `fac env` shows it, `fac env build` retries"
                )
                self._line_for_env = True
                self.maybe_verify_main()
                return
            self._line_for_env = False
            if self.cfg.auto_fix:
                self.spawn_fixer(state.reason or "main is red")
            ws = fac.store.workers()
            fixers = [w.name for w in ws if w.role in line.FIX_ROLES and w.state not in FIXER_GONE]
            text = stop_notice(state.reason or f"{fac.main} is red", fac.main, fixers)
            for w in ws:
                if w.state not in ("stopped", "done", "exited"):
                    messages.send(fac, w.name, text, sender="supervisor", kind="line")
        elif not state.stopped and self._line_notified > 0:
            self._line_notified = -1.0
            self.say("line resumed")
            if self._line_for_env:  # the agents were never told it stopped
                self._line_for_env = False
                self.maybe_verify_main()
                return
            sha = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
            for w in fac.store.workers():
                if w.state not in ("stopped", "done", "exited"):
                    messages.send(fac, w.name, resume_notice(fac.main, sha), sender="supervisor", kind="line")
        self.maybe_verify_main()

    def spawn_fixer(self, reason: str) -> None:
        fac = self.fac
        if any(w.role == "fixer" and w.state not in FIXER_GONE for w in fac.store.workers()):
            return
        try:
            from supervisor import roles

            role = roles.get(fac.root, "fixer")
            command = self.cfg.fixer_command if role.runtime == "command" else None
            if role.runtime == "command" and not command:
                raise FacError("the fixer role runs commands and [supervisor] fixer_command is not set")
            res = workers.spawn(
                fac, "fixer", task=f"{fac.main} is red; make it green. {reason}", command=command
            )
            self.say(f"auto_fix: spawned {res['name']}")
        except FacError as e:
            fac.store.event("auto-fix-failed", None, error=e.message)
            self.say(f"auto_fix could not spawn a fixer: {e.message}")

    def maybe_verify_main(self) -> None:
        """With verify_main, a main moved by anyone (a human's push too) is verified in the background."""
        if not self.fac.config.queue.verify_main or self._verifying:
            return
        sha = repo.rev_parse(self.fac.root, f"refs/heads/{self.fac.main}")
        if sha == self._main_seen:
            return
        self._main_seen = sha
        self._verifying = True

        def job() -> None:
            try:
                fac = Factory(self.fac.root)
                v = line.verify(fac)
                self.say(f"verified {self.fac.main} {str(sha)[:10]}: {'green' if v.ok else 'RED'}")
            except Exception as e:  # never take the supervisor down with a verify
                self.say(f"verify failed to run: {e}")
            finally:
                self._verifying = False
                self.wake.set()

        threading.Thread(target=job, daemon=True).start()
