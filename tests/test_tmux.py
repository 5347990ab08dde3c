"""How fac tells how a pane's process ended when tmux does not know yet, and its libtmux view of a server."""

from __future__ import annotations

import signal
import subprocess

import pytest
from helpers import wait_for

from supervisor.tmux import LiveTmux, Tmux, _proc_end


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


def test_the_libtmux_view_sees_the_same_panes_as_the_subprocess_one(tmux_server: LiveTmux) -> None:
    raw = Tmux(tmux_server.socket)
    _, live_pane = raw.new_window("s1", "alive", "/", ["sleep", "600"], {})
    _, dead_pane = raw.new_window("s1", "ended", "/", ["sh", "-c", "echo bye from the pane; exit 3"], {})
    wait_for(lambda: [p for p in raw.panes("s1") if p.pane_id == dead_pane and p.settled], 10, "the exit")

    assert tmux_server.panes("s1") == raw.panes("s1")
    by_name = {p.window_name: p for p in tmux_server.panes("s1")}
    assert by_name["alive"].pane_id == live_pane and not by_name["alive"].dead
    assert by_name["ended"].dead and by_name["ended"].dead_status == 3
    assert "bye from the pane" in "\n".join(tmux_server.capture(dead_pane) or [])
    assert tmux_server.panes("no-such-session") == [] and tmux_server.capture("%999") is None


def test_the_libtmux_view_of_a_server_that_is_not_running(tmux_server: LiveTmux) -> None:
    assert not tmux_server.running()
    assert tmux_server.panes("s1") == []
    tmux_server.kill_server()  # nothing to stop: no error


def test_a_pane_never_inherits_the_terminal_size_of_the_shell_that_started_tmux(
    tmux_server: LiveTmux, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Programs in a pane that read COLUMNS/LINES (rich, curses) would draw at that size, not the pane's.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    monkeypatch.setenv("FAC_TEST_MARK", "here")
    raw = Tmux(tmux_server.socket)
    _, pane = raw.new_window("s1", "env", "/", ["sh", "-c", "env; echo END"], {})
    wait_for(lambda: "END" in (tmux_server.capture(pane) or []), 10, "the pane's env")
    shown = tmux_server.capture(pane) or []
    assert "FAC_TEST_MARK=here" in shown  # the rest of the environment does reach the pane
    assert not [ln for ln in shown if ln.startswith(("COLUMNS=", "LINES="))], shown
