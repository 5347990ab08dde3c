"""`fac up` and `fac down`: the factory's tmux session."""

from __future__ import annotations

from pathlib import Path

from helpers import (
    assert_usage_error,
    branches,
    capture_pane,
    fac_json,
    fac_ok,
    run_fac,
    start_worker,
    status,
    tmux,
    wait_for,
    window_names,
)

SESSION = "fac-fac"


def test_up_starts_the_session_with_a_supervisor_window_and_is_idempotent(
    factory: Path, tmux_socket: str
) -> None:
    first = fac_json("up", cwd=factory)
    assert first["session"] == SESSION
    assert "supervisor" in first["started"]
    assert "supervisor" in window_names(tmux_socket, SESSION)
    # fac's own window runs fac itself, on the same private server
    wait_for(
        lambda: SESSION in capture_pane(tmux_socket, f"={SESSION}:supervisor"), 15, "the supervisor's view"
    )

    second = fac_json("up", cwd=factory)
    assert second["started"] == []
    assert "supervisor" in second["already_running"]
    assert window_names(tmux_socket, SESSION).count("supervisor") == 1


def test_up_tells_how_to_watch_the_session(factory: Path, tmux_socket: str) -> None:
    out = fac_ok("up", cwd=factory).stdout
    assert f"session {SESSION} is up" in out
    assert f"tmux -L {tmux_socket} attach -t {SESSION}" in out


def test_down_kills_the_session_and_keeps_worktrees(factory: Path, tmux_socket: str) -> None:
    fac_ok("up", cwd=factory)
    start_worker(factory, "w1")

    report = fac_json("down", cwd=factory)

    assert report["was_running"] is True and report["removed"] == []
    assert tmux(tmux_socket, "has-session", "-t", f"={SESSION}").returncode != 0
    assert (factory / ".fac" / "worktrees" / "w1").is_dir()
    assert "fac/w1" in branches(factory)
    (w,) = status(factory)["workers"]
    assert (w["name"], w["state"], w["process"]) == ("w1", "stopped", "no window")

    again = fac_ok("down", cwd=factory).stdout
    assert "was not running" in again


def test_down_rm_removes_worktrees_branches_and_workers(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1")
    start_worker(factory, "w2")

    report = fac_json("down", "--rm", cwd=factory)

    assert sorted(report["removed"]) == ["w1", "w2"]
    assert not (factory / ".fac" / "worktrees" / "w1").exists()
    assert not (factory / ".fac" / "worktrees" / "w2").exists()
    assert [b for b in branches(factory) if b.startswith("fac/")] == []
    assert status(factory)["workers"] == []
    assert status(factory)["session_running"] is False


def test_down_rm_refuses_dirty_worktrees_without_force(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1")
    (factory / ".fac" / "worktrees" / "w1" / "notes.txt").write_text("unsaved\n")

    assert_usage_error(run_fac("down", "--rm", cwd=factory), "uncommitted changes: w1", "--force")
    assert (factory / ".fac" / "worktrees" / "w1" / "notes.txt").exists()
    assert "w1" in window_names(tmux_socket, SESSION)  # nothing was stopped either

    fac_ok("down", "--rm", "--force", cwd=factory)
    assert not (factory / ".fac" / "worktrees" / "w1").exists()


def test_up_after_down_starts_a_fresh_session(factory: Path, tmux_socket: str) -> None:
    fac_ok("up", cwd=factory)
    fac_ok("down", cwd=factory)
    assert "supervisor" in fac_json("up", cwd=factory)["started"]
    assert "supervisor" in window_names(tmux_socket, SESSION)


def test_the_session_is_named_by_the_config(factory: Path, tmux_socket: str) -> None:
    with (factory / "factory.toml").open("a") as f:
        f.write('\n[tmux]\nsession = "my-line"\n')
    assert fac_json("up", cwd=factory)["session"] == "my-line"
    assert "supervisor" in window_names(tmux_socket, "my-line")
    assert window_names(tmux_socket, SESSION) == []
