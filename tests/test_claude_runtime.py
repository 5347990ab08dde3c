"""The claude runtime, tested without Claude Code: its command line, its settings file, and every hook
run with the JSON Claude Code would send (a scripted stand-in for `claude` plays the CLI in a pane)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_usage_error, fac_json, git, run_fac, running_supervisor, session_of, wait_for

from supervisor import workers
from supervisor.factory import Factory

# A stand-in for the `claude` CLI: records its argv, then does what Claude Code does at start-up:
# runs the SessionStart hook from .claude/settings.local.json with JSON on stdin, keeping its output.
FAKE_CLAUDE = r"""#!/usr/bin/env python3
import json, subprocess, sys, time, pathlib
def put(name, text):  # whole or not at all: the test reads the file as soon as it exists
    tmp = pathlib.Path(name + ".tmp")
    tmp.write_text(text)
    tmp.rename(name)
put("claude-argv.json", json.dumps(sys.argv[1:]))
settings = json.loads(pathlib.Path(".claude/settings.local.json").read_text())
cmd = settings["hooks"]["SessionStart"][0]["hooks"][0]["command"]
payload = {"session_id": "sess-1234", "hook_event_name": "SessionStart", "source": "startup",
           "transcript_path": "/dev/null", "cwd": str(pathlib.Path.cwd())}
out = subprocess.run(cmd, shell=True, input=json.dumps(payload), capture_output=True, text=True)
put("session-start-output.txt", out.stdout)
time.sleep(600)
"""


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "fake-bin"
    bindir.mkdir()
    exe = bindir / "claude"
    exe.write_text(FAKE_CLAUDE)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return exe


@pytest.fixture
def supervised(factory: Path) -> Iterator[Path]:
    """The supervisor running: Claude's hooks in its pane speak through the worker's channel."""
    with running_supervisor(factory):
        yield factory


def hook(root: Path, worker: str, event: str, payload: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the exact hook command from the worker's settings file, as Claude Code would (a shell)."""
    settings = json.loads((root / ".fac/worktrees" / worker / ".claude/settings.local.json").read_text())
    name = {
        "session-start": "SessionStart",
        "prompt": "UserPromptSubmit",
        "stop": "Stop",
        "notification": "Notification",
    }[event]
    cmd = settings["hooks"][name][0]["hooks"][0]["command"]
    return subprocess.run(
        cmd,
        shell=True,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=root / ".fac/worktrees" / worker,
        env={**os.environ, "FAC_ROOT": str(root)},
    )


def test_spawn_without_claude_installed_says_how_to_install_it(factory: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for tool in ("git", "tmux"):
        (empty / tool).symlink_to(
            subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        )
    proc = run_fac(
        "spawn",
        "worker",
        "--no-up",
        "--runtime",
        "claude",
        "--name",
        "c1",
        cwd=factory,
        env={"PATH": str(empty)},
    )
    assert_usage_error(proc, "`claude` is not on PATH", "npm install -g @anthropic-ai/claude-code")
    assert fac_json("status", cwd=factory)["workers"] == []


def test_spawned_claude_gets_context_permissions_hooks_and_reports_its_session(
    factory: Path, fake_claude: Path, supervised: Path
) -> None:
    res = fac_json(
        "spawn",
        "worker",
        "--no-up",
        "--runtime",
        "claude",
        "--name",
        "c1",
        "--task",
        "Add char_count",
        cwd=factory,
    )
    wt = Path(res["worktree"])
    wait_for(
        lambda: (wt / "session-start-output.txt").exists(), 15, "the fake claude to run its SessionStart hook"
    )
    argv = json.loads((wt / "claude-argv.json").read_text())
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    system = argv[argv.index("--append-system-prompt") + 1]
    assert "You are a worker in a software factory run by fac" in system
    assert "Add char_count" in system
    assert argv[-1] == "Add char_count"
    settings = json.loads((wt / ".claude/settings.local.json").read_text())
    assert set(settings["hooks"]) == {"SessionStart", "UserPromptSubmit", "Stop", "Notification"}
    assert "Bash(fac submit:*)" in settings["permissions"]["allow"]
    wait_for(lambda: Factory(factory).store.worker("c1").session_id == "sess-1234", 10, "the session id")
    # fac's own file for Claude never reaches a commit (the scope guard would reject it).
    assert ".claude" not in git(wt, "status", "--porcelain")


def test_hooks_report_state_ack_messages_and_block_a_stop_while_checks_are_red(
    factory: Path, fake_claude: Path, supervised: Path
) -> None:
    res = fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", "c1", cwd=factory)
    wt = Path(res["worktree"])
    store = Factory(factory).store
    wait_for(lambda: store.worker("c1").session_id, 15, "the SessionStart hook")

    # A red verdict arrives while Claude is busy; Claude submits it as a prompt: that is the receipt.
    mid = fac_json("send", "c1", "[fac] RED: fix test_x", cwd=factory)["id"]
    prompt = f"# [fac] RED: fix test_x\n# (message {mid}: `fac inbox` shows it and counts as the receipt)"
    out = hook(
        factory,
        "c1",
        "prompt",
        {"session_id": "sess-1234", "hook_event_name": "UserPromptSubmit", "prompt": prompt},
    )
    assert out.returncode == 0, out.stderr
    assert store.message(mid).acked_at is not None
    assert store.worker("c1").state == "working"

    # Claude wants to stop with a failing test in its worktree: the hook blocks with the reason.
    (wt / "system-under-construction/tests/test_wip.py").write_text(
        "def test_wip():\n    assert 2 + 2 == 5\n"
    )
    stop = {"session_id": "sess-1234", "hook_event_name": "Stop", "stop_hook_active": False}
    out = hook(factory, "c1", "stop", stop)
    decision = json.loads(out.stdout)
    assert decision["decision"] == "block"
    assert "test_wip" in decision["reason"] and "fac submit" in decision["reason"]
    assert store.worker("c1").state == "working"
    # The second stop of the same turn is let through: no endless loop.
    out = hook(factory, "c1", "stop", {**stop, "stop_hook_active": True})
    assert out.stdout.strip() == ""
    assert store.worker("c1").state == "idle"
    # Green checks: the stop goes through.
    (wt / "system-under-construction/tests/test_wip.py").unlink()
    out = hook(factory, "c1", "stop", stop)
    assert out.stdout.strip() == "" and store.worker("c1").state == "idle"

    out = hook(
        factory,
        "c1",
        "notification",
        {"hook_event_name": "Notification", "message": "Claude needs your permission to use Bash"},
    )
    assert store.worker("c1").state == "waiting-for-permission"

    # A new session (a restart) is given the unread messages as context, and that is their receipt.
    mid2 = fac_json("send", "c1", "rebase on main please", cwd=factory)["id"]
    out = hook(factory, "c1", "session-start", {"session_id": "sess-5678", "hook_event_name": "SessionStart"})
    assert "rebase on main please" in out.stdout
    assert store.message(mid2).acked_at is not None
    assert store.worker("c1").session_id == "sess-5678"


def test_a_restart_resumes_the_session(factory: Path, fake_claude: Path, supervised: Path) -> None:
    fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", "c1", cwd=factory)
    fac = Factory(factory)
    wait_for(lambda: fac.store.worker("c1").session_id, 15, "the SessionStart hook")
    argv, _env = workers.launch_for(fac, fac.store.worker("c1"))
    assert argv[-2:] == ["--resume", "sess-1234"]
    if argv[0] == "bwrap":  # in the agent's sandbox: the runtime's command follows bubblewrap's `--`
        argv = argv[argv.index("--") + 1 :]
    assert shlex.join(argv).startswith("claude --permission-mode acceptEdits")


def test_a_role_can_choose_its_permission_mode(factory: Path, fake_claude: Path) -> None:
    role = factory / "roles" / "planner.md"
    role.write_text(
        role.read_text().replace('runtime = "command"', 'runtime = "claude"\npermission_mode = "plan"')
    )
    res = fac_json("spawn", "planner", "--no-up", "--name", "p1", cwd=factory)
    wt = Path(res["worktree"])
    wait_for(lambda: (wt / "claude-argv.json").exists(), 15, "the fake claude")
    argv = json.loads((wt / "claude-argv.json").read_text())
    assert argv[argv.index("--permission-mode") + 1] == "plan"


def test_messages_reach_claude_as_plain_text_not_as_memory_comments(
    factory: Path, fake_claude: Path, supervised: Path, tmux_socket: str
) -> None:
    from helpers import capture_pane

    fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", "c1", cwd=factory)
    wait_for(lambda: Factory(factory).store.worker("c1").session_id, 15, "the SessionStart hook")
    fac_json("send", "c1", "please look at test_x", cwd=factory)
    pane = wait_for(lambda: capture_pane(tmux_socket, f"={session_of()}:=c1"), 10, "the pane")
    wait_for(
        lambda: "please look at test_x" in capture_pane(tmux_socket, f"={session_of()}:=c1"),
        10,
        "the message",
    )
    pane = capture_pane(tmux_socket, f"={session_of()}:=c1")
    line = next(x for x in pane.splitlines() if "please look at test_x" in x)
    assert not line.lstrip().startswith("#"), "a leading # would make Claude Code store it as a memory"
