"""Helpers shared by fac's tests: run the real CLI, poll for a condition, look at tmux and git.

Import them in a test module with `from helpers import run_fac, wait_for, ...` (pytest puts
`tests/` on sys.path because the directory has no `__init__.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import git as gitpython
import pytest

from supervisor import isolation
from supervisor.daemon import Supervisor
from supervisor.factory import Factory
from supervisor.tmux import LiveTmux, PaneInfo, Tmux

T = TypeVar("T")

FAC = [sys.executable, "-m", "supervisor"]


UNCONFINED = isolation.unconfined()  # why agents run unsandboxed here ("" when bubblewrap works)
needs_bwrap = pytest.mark.skipif(bool(UNCONFINED), reason=f"agents cannot be sandboxed here: {UNCONFINED}")


def run_fac(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str | None] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the real `fac` CLI in a subprocess; output is captured as text.

    `env` is applied on top of the current environment; a value of None removes that variable.
    """
    full = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run(
        [*FAC, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def fac_ok(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`run_fac` that fails the test, showing stdout and stderr, unless fac exits 0."""
    proc = run_fac(*args, **kwargs)
    assert proc.returncode == 0, (
        f"fac {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def fac_json(*args: str, **kwargs: Any) -> Any:
    """Run `fac ARGS --json` successfully and return the parsed output."""
    return json.loads(fac_ok(*args, "--json", **kwargs).stdout)


def assert_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """fac's contract for an expected error: exit 2, one or two lines (message, hint), no traceback."""
    detail = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, detail
    assert "Traceback" not in proc.stderr, detail
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, detail
    assert lines[0].startswith("fac: error: "), detail
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in stderr\n{detail}"


@contextmanager
def running_supervisor(root: Path) -> Iterator[Supervisor]:
    """The real supervisor loop (and so the workers' channels) in a thread of this process, stopped
    and joined afterwards."""
    stop = threading.Event()
    sup = Supervisor(Factory(root))
    t = threading.Thread(target=sup.run, kwargs={"should_stop": stop.is_set}, daemon=True)
    t.start()
    try:
        yield sup
    finally:
        stop.set()
        sup.wake.set()
        t.join(10)
        assert not t.is_alive(), "the supervisor did not stop"


@contextmanager
def serving_channels(root: Path, *names: str) -> Iterator[None]:
    """These workers' channels, served as the supervisor serves them (its planner) but without its
    loop: for a test that runs a pane's program in this process."""
    from supervisor import channel, daemon, workers

    fac = Factory(root)
    trees = {n: Path(fac.worker(n).worktree) for n in names}

    def plan(peer: str, argv: list[str], cwd: str) -> channel.Run:
        return daemon.channel_run(root, trees.get(peer), peer, argv, cwd)

    server = channel.Server(plan)
    try:
        server.sync({n: workers.socket_path(fac, n) for n in names})
        yield
    finally:
        server.stop()
        fac.store.close()


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, message: str = "", interval: float = 0.05
) -> T:
    """Poll `predicate` until it returns something truthy and return that; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what} (last value: {value!r})")
        time.sleep(interval)


def tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run tmux on the private server `socket` (never the default one)."""
    assert socket, "refusing to talk to the default tmux server"
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)


def tmux_live(socket: str) -> LiveTmux:
    """The private server `socket` through libtmux (never the default one)."""
    assert socket, "refusing to talk to the default tmux server"
    return LiveTmux(socket)


def capture_pane(socket: str, target: str) -> str:
    """The text of a pane (a pane id like %3, a window id like @1, or session:window)."""
    lines = tmux_live(socket).capture(target)
    return "\n".join(lines) + "\n" if lines else ""


def window_names(socket: str, session: str | None = None) -> list[str]:
    """Names of the windows of `session` (all sessions when None); [] when there is no server."""
    server = tmux_live(socket).server
    sessions = server.sessions.filter(session_name=session) if session else server.sessions
    return [w.window_name or "" for s in sessions for w in s.windows]


def pane_script(root: Path, name: str, text: str) -> Path:
    """A script for a worker's pane where its sandbox can read it: in the factory root (read-only
    there; `.fac/` is hidden), kept out of git's view so the human's checkout stays clean."""
    exclude = root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    text_now = exclude.read_text() if exclude.exists() else ""
    if "/.scripts/" not in text_now.splitlines():
        exclude.write_text(text_now + "/.scripts/\n")
    path = root / ".scripts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def git(cwd: str | os.PathLike[str], *args: str, check: bool = True) -> str:
    """Run git in `cwd` and return its stdout without the final newline."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.rstrip("\n")


def branches(root: Path) -> list[str]:
    """The repository's branches, read through GitPython's object model (the suite imports it once)."""
    return sorted(head.name for head in gitpython.Repo(root).heads)


def session_of(root: Path | str = ".") -> str:
    """The tmux session of the factory at `root` (default: the one the test runs in), as fac names it."""
    from supervisor import config

    return config.load(Path(root).resolve()).session


def spawn(root: Path, name: str, cmd: str = "sleep 600", *extra: str, role: str = "worker") -> dict[str, Any]:
    """`fac spawn ROLE --name NAME --cmd CMD` that must succeed; returns its JSON report."""
    return fac_json("spawn", role, "--no-up", "--name", name, "--cmd", cmd, *extra, cwd=root)


def start_worker(
    root: Path, name: str, cmd: str = "sleep 600", role: str = "worker", **kw: Any
) -> dict[str, Any]:
    """Spawn a worker in-process (faster than the CLI) for tests whose subject is not spawn itself."""
    from supervisor import workers
    from supervisor.factory import Factory

    fac = Factory(root)
    try:
        return workers.spawn(fac, role, name=name, command=cmd, **kw)
    finally:
        if fac._store is not None:
            fac.store.close()


def status(root: Path) -> dict[str, Any]:
    """What `fac status --json` reports, computed in-process (test_workers checks the CLI's own output)."""
    from supervisor import status as statusmod
    from supervisor.factory import Factory

    fac = Factory(root)
    try:
        return json.loads(json.dumps(statusmod.collect(fac), default=str))
    finally:
        if fac._store is not None:
            fac.store.close()


def worker_view(root: Path, name: str) -> dict[str, Any] | None:
    return next((w for w in status(root)["workers"] if w["name"] == name), None)


def pane_dead(socket: str, pane: str) -> bool:
    """True once the process in `pane` has exited (the pane stays, remain-on-exit)."""
    return tmux(socket, "display-message", "-p", "-t", pane, "#{pane_dead}").stdout.strip() == "1"


def wait_until_exited(socket: str, pane: str, timeout: float = 10.0) -> None:
    wait_for(lambda: pane_dead(socket, pane), timeout, message=f"the process in pane {pane} to exit")


def pane_end(socket: str, pane: str) -> PaneInfo | None:
    """The pane as fac's supervisor sees it once its process has ended: tmux's exit status, or the
    kernel's for a zombie tmux has not reaped yet (None while neither is known)."""
    for session in tmux(socket, "list-sessions", "-F", "#{session_name}").stdout.split():
        for p in Tmux(socket).panes(session):
            if p.pane_id == pane and p.settled:
                return p
    return None


def dashboard_text(root: Path) -> str:
    """The dashboard as the supervisor's window draws it (200 columns), as plain text."""
    import io

    from rich.console import Console

    from supervisor import dashboard
    from supervisor.factory import Factory

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(dashboard.render(dashboard.snapshot(Factory(root))))
    return console.export_text()
