"""How fac tells how a pane's process ended when tmux does not know yet."""

from __future__ import annotations

import signal
import subprocess

from helpers import wait_for

from supervisor.tmux import _proc_end


def _zombie(argv: list[str]) -> subprocess.Popen[bytes]:
    """A child that has ended and is not reaped yet (what tmux sees before its SIGCHLD is handled)."""
    proc = subprocess.Popen(argv)
    wait_for(
        lambda: open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 10, "a zombie"
    )
    return proc


def test_a_zombie_tells_its_exit_status_and_a_live_process_is_not_dead() -> None:
    exited = _zombie(["sh", "-c", "exit 7"])
    clean = _zombie(["true"])
    killed = _zombie(["sh", "-c", "kill -9 $$"])
    alive = subprocess.Popen(["sleep", "60"])
    try:
        assert _proc_end(exited.pid) == (True, 7, None)
        assert _proc_end(clean.pid) == (True, 0, None)
        assert _proc_end(killed.pid) == (True, None, signal.SIGKILL)
        assert _proc_end(alive.pid) == (False, None, None)
    finally:
        alive.kill()
        for p in (exited, clean, killed, alive):
            p.wait()
    assert _proc_end(exited.pid) == (True, None, None)  # reaped: only tmux can say now
