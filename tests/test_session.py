"""`fac up` and `fac down`: the factory's tmux session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import (
    assert_usage_error,
    branches,
    capture_pane,
    fac_json,
    fac_ok,
    git,
    run_fac,
    session_of,
    start_worker,
    status,
    tmux,
    wait_for,
    window_names,
)


def test_up_starts_the_session_with_a_supervisor_window_and_is_idempotent(
    factory: Path, tmux_socket: str
) -> None:
    first = fac_json("up", cwd=factory)
    assert first["session"] == session_of()
    assert "supervisor" in first["started"]
    assert "supervisor" in window_names(tmux_socket, session_of())
    # fac's own window runs fac itself, on the same private server
    wait_for(
        lambda: session_of() in capture_pane(tmux_socket, f"={session_of()}:supervisor"),
        15,
        "the supervisor's view",
    )

    second = fac_json("up", cwd=factory)
    assert second["started"] == []
    assert "supervisor" in second["already_running"]
    assert window_names(tmux_socket, session_of()).count("supervisor") == 1


def test_up_tells_how_to_watch_the_session(factory: Path, tmux_socket: str) -> None:
    out = fac_ok("up", cwd=factory).stdout
    assert f"session {session_of()} is up" in out
    assert f"tmux -L {tmux_socket} attach -t {session_of()}" in out


def test_down_kills_the_session_and_keeps_worktrees(factory: Path, tmux_socket: str) -> None:
    fac_ok("up", cwd=factory)
    start_worker(factory, "w1")

    report = fac_json("down", cwd=factory)

    assert report["was_running"] is True and report["removed"] == []
    assert tmux(tmux_socket, "has-session", "-t", f"={session_of()}").returncode != 0
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
    assert "w1" in window_names(tmux_socket, session_of())  # nothing was stopped either

    fac_ok("down", "--rm", "--force", cwd=factory)
    assert not (factory / ".fac" / "worktrees" / "w1").exists()


def test_up_after_down_starts_a_fresh_session(factory: Path, tmux_socket: str) -> None:
    fac_ok("up", cwd=factory)
    fac_ok("down", cwd=factory)
    assert "supervisor" in fac_json("up", cwd=factory)["started"]
    assert "supervisor" in window_names(tmux_socket, session_of())


def test_the_session_is_named_by_the_config(factory: Path, tmux_socket: str) -> None:
    default = session_of()
    with (factory / "factory.toml").open("a") as f:
        f.write('\n[tmux]\nsession = "my-line"\n')
    assert fac_json("up", cwd=factory)["session"] == "my-line"
    assert "supervisor" in window_names(tmux_socket, "my-line")
    assert window_names(tmux_socket, default) == []


def _twin_factories(tmp_path: Path) -> tuple[Path, Path]:
    """Two factories whose directories share a name: ~/a/app and ~/b/app."""
    a, b = tmp_path / "a" / "app", tmp_path / "b" / "app"
    for root in (a, b):
        fac_ok("init", str(root), "--sample", cwd=tmp_path)
    return a, b


def test_two_factories_whose_directories_share_a_name_get_two_sessions(
    tmp_path: Path, tmux_socket: str
) -> None:
    a, b = _twin_factories(tmp_path)
    up_a, up_b = fac_json("up", cwd=a), fac_json("up", cwd=b)

    assert up_a["session"] != up_b["session"]
    for up in (up_a, up_b):  # readable: fac-<name>-<short hash of the path>
        assert re.fullmatch(r"fac-app-[0-9a-f]{6}", up["session"]), up["session"]
        assert sorted(up["started"]) == ["merge-queue", "supervisor"]
    # each session is marked as its own factory's
    for root, up in ((a, up_a), (b, up_b)):
        owner = tmux(tmux_socket, "display-message", "-p", "-t", f"={up['session']}:", "#{@fac_root}").stdout
        assert owner.strip() == str(root)

    fac_json("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", cwd=b)
    assert "w1" in window_names(tmux_socket, up_b["session"])
    assert "w1" not in window_names(tmux_socket, up_a["session"])

    fac_ok("down", cwd=a)
    assert tmux(tmux_socket, "has-session", "-t", f"={up_a['session']}").returncode != 0
    assert tmux(tmux_socket, "has-session", "-t", f"={up_b['session']}").returncode == 0
    assert status(b)["session_running"] is True and status(a)["session_running"] is False


def test_a_session_fac_did_not_create_for_this_factory_is_never_adopted(
    factory: Path, tmp_path: Path, tmux_socket: str
) -> None:
    # An explicit [tmux] session is used as written, even when another factory already has it.
    other = tmp_path / "other"
    fac_ok("init", str(other), "--sample", cwd=tmp_path)
    for root in (factory, other):
        with (root / "factory.toml").open("a") as f:
            f.write('\n[tmux]\nsession = "shared"\n')
    assert fac_json("up", cwd=other)["session"] == "shared"
    before = window_names(tmux_socket, "shared")

    for args in (["up"], ["spawn", "worker", "--name", "w1", "--cmd", "sleep 600"], ["down"]):
        assert_usage_error(
            run_fac(*args, cwd=factory), f"belongs to the factory at {other}", "[tmux] session"
        )
    assert window_names(tmux_socket, "shared") == before  # nothing added, nothing killed
    assert not (factory / ".fac" / "worktrees" / "w1").exists()  # the spawn made nothing
    data = fac_json("status", cwd=factory)
    assert data["session_running"] is False and str(other) in data["session_conflict"]
    assert f"belongs to the factory at {other}" in fac_ok("status", cwd=factory).stdout

    # A session a human made by hand under that name is not fac's either.
    # A second session keeps the server alive: killing its last session makes tmux exit, and a
    # new-session racing that exit can fail (then `fac up` would rightly start its own).
    assert tmux(tmux_socket, "new-session", "-d", "-s", "keep", "sleep 600").returncode == 0
    tmux(tmux_socket, "kill-session", "-t", "=shared")
    assert tmux(tmux_socket, "new-session", "-d", "-s", "shared", "sleep 600").returncode == 0
    assert_usage_error(run_fac("up", cwd=factory), "fac did not create it")
    assert_usage_error(run_fac("down", cwd=factory), "fac did not create it")
    assert tmux(tmux_socket, "has-session", "-t", "=shared").returncode == 0


def test_down_rm_refuses_branches_with_unmerged_commits_and_prints_recovery_shas(
    factory: Path, tmux_socket: str
) -> None:
    start_worker(factory, "w1")
    start_worker(factory, "w2")  # nothing of its own: dropping it loses nothing
    wt = factory / ".fac" / "worktrees" / "w1"
    (wt / "system-under-construction" / "work.txt").write_text("a day of work\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "work")
    sha = git(wt, "rev-parse", "HEAD")

    assert_usage_error(
        run_fac("down", "--rm", cwd=factory), "unmerged commits: fac/w1 (1 commit not on main)"
    )
    assert "fac/w1" in branches(factory) and "fac/w2" in branches(factory)
    assert "w1" in window_names(tmux_socket, session_of())  # nothing was stopped either

    out = fac_ok("down", "--rm", "--force", cwd=factory).stdout
    assert f"recover with `git branch fac/w1 {sha}`" in out
    assert "fac/w2" in out  # every dropped branch is named with its sha
    assert "fac/w1" not in branches(factory)
    git(factory, "branch", "fac/w1", sha)  # the printed command brings the work back
    assert git(factory, "show", "fac/w1:system-under-construction/work.txt") == "a day of work"


def test_spawn_without_up_starts_the_factory_whole(factory: Path, tmux_socket: str) -> None:
    # A spawn that fails starts nothing at all.
    assert_usage_error(run_fac("spawn", "wizard", "--cmd", "sleep 600", cwd=factory), "wizard")
    assert tmux(tmux_socket, "has-session", "-t", f"={session_of()}").returncode != 0

    proc = fac_ok("spawn", "worker", "--name", "w1", "--cmd", "sleep 600", cwd=factory)
    assert "the factory was not up: started supervisor, merge-queue" in proc.stdout
    assert sorted(window_names(tmux_socket, session_of())) == ["merge-queue", "supervisor", "w1"]

    def both_running() -> bool:
        procs = fac_json("status", cwd=factory)["processes"]
        return all(p["running"] for p in procs.values())

    wait_for(both_running, 30, "the supervisor and the queue to run")
    # Once up, a spawn starts nothing more.
    assert fac_json("spawn", "worker", "--name", "w2", "--cmd", "sleep 600", cwd=factory)["started"] == []


def test_spawn_no_up_starts_only_the_worker_and_says_what_that_means(factory: Path, tmux_socket: str) -> None:
    out = fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", cwd=factory).stdout
    assert "the factory is not up (--no-up)" in out and "`fac up`" in out
    assert window_names(tmux_socket, session_of()) == ["w1"]


def test_the_status_line_shows_the_whole_session_name(tmp_path: Path, tmux_socket: str) -> None:
    root = tmp_path / "a-factory-whose-directory-name-is-rather-long"
    fac_ok("init", str(root), "--sample", cwd=tmp_path)
    session = fac_json("up", cwd=root)["session"]
    assert len(session) > 40  # longer than the room fac used to give it
    shown = tmux(tmux_socket, "display-message", "-p", "-t", f"={session}:", "#{T:status-left}").stdout
    room = tmux(tmux_socket, "display-message", "-p", "-t", f"={session}:", "#{status-left-length}").stdout
    assert session in shown
    assert len(shown.rstrip("\n")) <= int(room), (shown, room)


def test_the_dashboard_repaints_whole_when_its_window_is_resized(
    factory: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell (or pytest-xdist) that exports its terminal's size: the dashboard still follows its window.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    session = fac_json("up", cwd=factory)["session"]
    target = f"={session}:supervisor"
    title = f"fac {session}"

    def frame() -> list[str]:  # the screen as it is, row by row (no history, rows not joined)
        return tmux(tmux_socket, "capture-pane", "-p", "-t", target).stdout.splitlines()

    def one_whole_frame(width: int) -> bool:
        lines = frame()
        drawn = [ln for ln in lines if ln.strip()]
        # exactly one frame: one title, its top border first, its bottom border after the table,
        # every line within the window's width (nothing left of the old size's wider frame)
        return (
            bool(drawn)
            and sum(title in ln for ln in lines) == 1
            and title in drawn[0]
            and all(len(ln.rstrip()) <= width for ln in lines)
            and any(ln.lstrip().startswith("╰") for ln in drawn)
        )

    wait_for(lambda: one_whole_frame(220), timeout=30, message="the dashboard's first frame")
    for width, height in ((90, 30), (140, 40), (70, 20)):
        tmux(tmux_socket, "resize-window", "-t", target, "-x", str(width), "-y", str(height))
        try:
            wait_for(lambda w=width: one_whole_frame(w), timeout=15)  # type: ignore[misc]
        except AssertionError as e:
            raise AssertionError(f"no whole repaint at width {width}:\n" + "\n".join(frame())) from e
