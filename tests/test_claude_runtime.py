"""The claude runtime, tested without Claude Code: its command line, its settings file, and every hook
run with the JSON Claude Code would send (a scripted stand-in for `claude` plays the CLI in a pane)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import claude_standin
import pytest
from helpers import assert_usage_error, fac_json, git, run_fac, running_supervisor, session_of, wait_for

from supervisor import workers
from supervisor.factory import Factory
from supervisor.runtimes import claude


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scripted stand-in (claude_standin.py) as `claude` on PATH."""
    bindir = tmp_path / "fake-bin"
    exe = claude_standin.install(bindir)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return exe


def control(factory: Path, worker: str) -> claude_standin.Control:
    """The stand-in's control directory for `worker`, in its run directory (its sandbox may write there)."""
    return claude_standin.Control(Factory(factory).run_dir(worker))


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
    control(factory, "c1").hold()  # the stand-in stays mid-turn: this test plays its hooks
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
    assert store.worker("c1").state == "waiting-for-human"
    shown = run_fac("status", cwd=factory).stdout
    assert "waiting-for-human: c1: Claude needs your permission to use Bash" in shown
    assert "fac attach c1" in shown
    import io

    from rich.console import Console

    from supervisor import dashboard

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(dashboard.render(dashboard.snapshot(Factory(factory))))
    board = console.export_text()
    assert "waiting for a human at the window" in board and "permission to use Bash" in board
    # Claude's idle_prompt, a minute after a turn, means it waits at its prompt: idle, nothing to do.
    idle = {
        "hook_event_name": "Notification",
        "notification_type": "idle_prompt",
        "message": "Claude is waiting",
    }
    hook(factory, "c1", "notification", idle)
    assert store.worker("c1").state == "idle"
    assert "waiting-for-human" not in run_fac("status", cwd=factory).stdout

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
    assert argv[-3:] == ["--resume", "sess-1234", claude.CONTINUE]  # resumed, and told to go on
    if argv[0] == "bwrap":  # in the agent's sandbox: the runtime's command follows bubblewrap's `--`
        argv = argv[argv.index("--") + 1 :]
    cli = argv[argv.index("--") + 1 :]  # after fac's launcher, which hands over the saved environment
    assert Path(cli[0]) == fake_claude
    assert shlex.join(cli[1:]).startswith("--permission-mode acceptEdits")


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
    wait_for(lambda: Factory(factory).store.worker("c1").state == "idle", 60, "its first turn to end")
    # At its prompt the message is pasted: by `fac send` or by the running supervisor, whichever
    # claims it first (one deliverer per message).
    sent = fac_json("send", "c1", "please look at test_x", cwd=factory)
    wait_for(
        lambda: "please look at test_x" in capture_pane(tmux_socket, f"={session_of()}:=c1"),
        10,
        "the message",
    )
    m = Factory(factory).store.message(sent["id"])
    assert m is not None and m.attempts == 1 and m.via == "paste"
    pane = capture_pane(tmux_socket, f"={session_of()}:=c1")
    line = next(x for x in pane.splitlines() if "please look at test_x" in x)
    assert not line.lstrip().startswith("#"), "a leading # would make Claude Code store it as a memory"


def test_claude_gets_the_spawners_environment_not_the_tmux_servers_stale_copy(
    factory: Path, fake_claude: Path, monkeypatch: pytest.MonkeyPatch, tmux_socket: str
) -> None:
    # The tmux server starts (as `fac up` would) with no Anthropic settings at all ...
    for var in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_TMPDIR"):
        monkeypatch.delenv(var, raising=False)
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "elsewhere"], check=True)
    # ... and the user exports them afterwards, then spawns.
    env = {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdefghij",
        "CLAUDE_CODE_TMPDIR": str(factory / "claude-tmp"),
    }
    res = fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", "c1", cwd=factory, env=env)
    wt = Path(res["worktree"])
    wait_for(lambda: (wt / "claude-env.json").exists(), 15, "the fake claude")
    seen = json.loads((wt / "claude-env.json").read_text())
    for var, value in env.items():
        assert seen.get(var) == value, var
    run_dir = factory / ".fac/runs/c1"
    assert seen["CLAUDE_CONFIG_DIR"] == str(run_dir / "claude-config") == res["config_dir"]
    saved = run_dir / "claude.env"
    assert saved.stat().st_mode & 0o777 == 0o600  # the key is kept from other users
    # The key never appears on a command line (`ps` would show it to every user of the machine).
    argv, _ = workers.launch_for(Factory(factory), Factory(factory).store.worker("c1"))
    assert not any(env["ANTHROPIC_API_KEY"] in a for a in argv)
    # First-run dialogs are settled in the worker's own config, and spawn said so once.
    config = json.loads((run_dir / "claude-config" / ".claude.json").read_text())
    assert config["hasCompletedOnboarding"] is True
    assert config["projects"][str(wt)]["hasTrustDialogAccepted"] is True
    assert config["customApiKeyResponses"]["approved"] == [env["ANTHROPIC_API_KEY"][-20:]]
    assert len(res["notes"]) == 1 and "first-run dialogs" in res["notes"][0]


def test_an_oauth_user_keeps_their_own_config_and_login(
    factory: Path, fake_claude: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "oauth-home"
    (home / ".claude").mkdir(parents=True)
    login = {"claudeAiOauth": {"accessToken": "a", "refreshToken": "r"}}
    (home / ".claude/.credentials.json").write_text(json.dumps(login))
    (home / ".claude.json").write_text(json.dumps({"oauthAccount": {"emailAddress": "u@x"}, "theme": "dark"}))
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    res = fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", "c1", cwd=factory)
    wt = Path(res["worktree"])
    wait_for(lambda: (wt / "claude-env.json").exists(), 15, "the fake claude")
    assert "CLAUDE_CONFIG_DIR" not in json.loads((wt / "claude-env.json").read_text())
    assert res["config_dir"] == str(home / ".claude")
    assert json.loads((home / ".claude/.credentials.json").read_text()) == login  # untouched
    config = json.loads((home / ".claude.json").read_text())
    assert config["oauthAccount"] == {"emailAddress": "u@x"} and config["theme"] == "dark"
    assert config["projects"][str(wt)]["hasTrustDialogAccepted"] is True
    assert "customApiKeyResponses" not in config


@pytest.mark.parametrize(
    ("config", "key", "settled"),
    [
        ({}, None, ["onboarding done", "trusted /w"]),
        (
            {},
            "sk-" + "k" * 30,
            ["onboarding done", "trusted /w", "approved the ANTHROPIC_API_KEY you exported"],
        ),
        ({"hasCompletedOnboarding": True, "projects": {"/w": {"hasTrustDialogAccepted": True}}}, None, []),
        (  # a key the user once refused is approved: they exported it and spawned with it
            {"hasCompletedOnboarding": True, "customApiKeyResponses": {"rejected": ["k" * 20]}},
            "sk-" + "k" * 30,
            ["trusted /w", "approved the ANTHROPIC_API_KEY you exported"],
        ),
    ],
)
def test_first_run_dialogs_are_settled_only_for_what_spawning_asked(
    config: dict, key: str | None, settled: list[str]
) -> None:
    from supervisor.runtimes.claude import settle_first_run

    out, done = settle_first_run(config, "/w", key)
    assert done == settled
    assert out["hasCompletedOnboarding"] is True and out["projects"]["/w"]["hasTrustDialogAccepted"] is True
    assert set(out["projects"]) == {"/w"}  # no other folder is trusted
    if key:
        assert out["customApiKeyResponses"]["approved"] == ["k" * 20]
        assert out["customApiKeyResponses"]["rejected"] == []
    else:
        assert out.get("customApiKeyResponses") == config.get("customApiKeyResponses")


def test_the_default_allow_list_runs_the_tests_either_way_python_is_called() -> None:
    from supervisor.runtimes.claude import ALLOW

    assert {"Bash(python -m pytest:*)", "Bash(python3 -m pytest:*)"} <= set(ALLOW)


@pytest.mark.parametrize(
    ("data", "state", "todo"),
    [
        ({"notification_type": "idle_prompt", "message": "Claude is waiting for your input"}, "idle", None),
        ({"message": "Claude is waiting for your input"}, "idle", None),  # before notification_type
        ({"notification_type": "auth_success", "message": "Logged in"}, "working", None),
        (
            {"notification_type": "permission_prompt", "message": "Claude needs your permission to use Bash"},
            "waiting-for-human",
            "fac attach w",
        ),
        ({"message": "Claude needs your permission to use Edit"}, "waiting-for-human", "permission_mode"),
        (
            {"notification_type": "elicitation_dialog", "message": "Pick one"},
            "waiting-for-human",
            "fac attach w",
        ),
        ({"notification_type": "something_new"}, "waiting-for-human", "Claude Code shows a dialog"),
    ],
)
def test_a_notification_is_idle_or_waits_for_a_human_with_what_to_do(
    data: dict, state: str, todo: str | None
) -> None:
    from supervisor.hooks import notification_state

    got, what = notification_state("w", {"hook_event_name": "Notification", **data})
    assert got == state
    assert (what is None) if todo is None else (todo in str(what))


def test_the_launcher_hands_over_the_saved_environment_and_runs_without_one(tmp_path: Path) -> None:
    import sys

    saved = tmp_path / "claude.env"
    saved.write_text(
        json.dumps({"env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}, "unset": ["ANTHROPIC_"]})
    )
    names = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "OTHER")
    show = [sys.executable, "-c", f"import os; print(*(os.environ.get(n, '-') for n in {names!r}))"]
    launch = [sys.executable, "-m", "supervisor.runtimes.launch"]
    # The tmux server's stale key (from `fac up`) goes: the spawner had none. Others stay.
    stale = {**os.environ, "ANTHROPIC_API_KEY": "stale", "OTHER": "kept"}
    out = subprocess.run([*launch, str(saved), "--", *show], capture_output=True, text=True, env=stale)
    assert out.stdout.split() == ["http://127.0.0.1:9", "-", "kept"]
    gone = subprocess.run(
        [*launch, str(tmp_path / "gone"), "--", *show], capture_output=True, text=True, env=stale
    )
    assert gone.stdout.split() == ["-", "stale", "kept"]
    missing = subprocess.run([*launch, str(saved), "--", "no-such-program-x"], capture_output=True, text=True)
    assert missing.returncode == 127 and "cannot start no-such-program-x" in missing.stderr


# --- delivery to Claude: at its prompt by paste, mid-turn and at start-up through its hooks ---


def _spawn_claude(factory: Path, name: str = "c1") -> Factory:
    fac_json("spawn", "worker", "--no-up", "--runtime", "claude", "--name", name, cwd=factory)
    return Factory(factory)


def test_mid_turn_a_message_goes_in_through_the_stop_hook_and_at_the_prompt_by_paste(
    factory: Path, fake_claude: Path, supervised: Path
) -> None:
    from supervisor.daemon import Supervisor

    c = control(factory, "c1")
    c.hold()
    fac = _spawn_claude(factory)
    wait_for(lambda: c.hooks("UserPromptSubmit"), 30, "its first turn to start")
    busy = fac_json("send", "c1", "note one: rebase on main", cwd=factory)
    assert busy["pasted"] is False and "mid-turn" in busy["reason"]
    Supervisor(fac).reconcile()  # a pass of its own, besides the running supervisor's: no paste either
    assert fac.store.message(busy["id"]).attempts == 0
    c.release()  # the turn ends: the Stop hook gives it to the model and keeps it working
    wait_for(lambda: fac.store.worker("c1").state == "idle", 60, "the turn to end")
    assert c.seen("note one: rebase on main") == 1
    assert any("note one" in e.get("continued", "") for e in c.log())
    m = fac.store.message(busy["id"])
    assert m.via == "hook:stop" and m.attempts == 0 and m.acked_at is not None

    # Now it sits at its prompt: a message is pasted (once), and its prompt hook is the receipt.
    # `fac send` and the running supervisor (woken by the new message) both try: one of them pastes.
    idle = fac_json("send", "c1", "note two: thanks", cwd=factory)
    wait_for(lambda: fac.store.message(idle["id"]).acked_at, 30, "the prompt hook's receipt")
    Supervisor(fac).reconcile()
    assert c.seen("note two: thanks") == 1
    m = fac.store.message(idle["id"])
    assert m.attempts == 1 and m.via == "paste"
    kinds = [(e.kind, e.payload.get("id"), e.payload.get("ids")) for e in fac.store.events(worker="c1")]
    delivered = kinds.index(("delivered", idle["id"], None))
    acked = next(i for i, k in enumerate(kinds) if k[0] == "ack" and idle["id"] in (k[2] or []))
    assert delivered < acked, "the receipt comes after the paste"


def test_a_note_sent_while_a_permission_prompt_is_open_is_not_typed_into_it(
    factory: Path, fake_claude: Path, tmux_socket: str, supervised: Path
) -> None:
    from supervisor.daemon import Supervisor

    c = control(factory, "c1")
    c.hold()
    c.open_dialog()
    fac = _spawn_claude(factory)
    wait_for(c.dialog_open, 30, "the permission prompt")
    sent = fac_json("send", "c1", "note: do not approve anything", cwd=factory)
    assert sent["pasted"] is False and "dialog is open" in sent["reason"]
    Supervisor(fac).reconcile()
    assert fac.store.message(sent["id"]).attempts == 0
    # The human answers the prompt; only that answer reached the dialog.
    target = f"={session_of()}:=c1"
    subprocess.run(["tmux", "-L", tmux_socket, "send-keys", "-t", target, "2", "Enter"], check=True)
    wait_for(lambda: [e for e in c.log() if "dialog_answer" in e], 30, "the dialog's answer")
    assert [e["dialog_answer"] for e in c.log() if "dialog_answer" in e] == ["2"]
    c.release()
    wait_for(lambda: c.seen("note: do not approve anything"), 60, "the note, after the prompt")
    assert c.seen("note: do not approve anything") == 1
    assert fac.store.message(sent["id"]).via == "hook:stop"


def test_a_message_sent_while_claude_is_down_arrives_after_its_restart_exactly_once(
    factory: Path, fake_claude: Path
) -> None:
    from supervisor.daemon import Supervisor

    c = control(factory, "c1")
    with running_supervisor(factory):  # its hooks speak through the worker's channel
        fac = _spawn_claude(factory)
        wait_for(lambda: fac.store.worker("c1").state == "idle", 60, "its first turn to end")
    # The supervisor is down while Claude crashes: the message is sent while nothing restarts it, and
    # this test's own passes do the restart.
    c.hold_start()  # the restarted process will take its time before its input is ready
    # It crashes: its pane's process killed (bubblewrap's, when sandboxed: the stand-in in its PID
    # namespace dies with it).
    os.kill(next(p for p in fac.panes() if p.window_name == "c1").pane_pid, signal.SIGKILL)
    wait_for(lambda: [p for p in fac.panes() if p.window_name == "c1" and p.dead], 30, "the crash")
    down = fac_json("send", "c1", "news while you were down", cwd=factory)
    assert down["pasted"] is False
    sup = Supervisor(fac)
    wait_for(lambda: sup.reconcile() and fac.store.worker("c1").restarts == 1, 30, "the restart")
    sup.reconcile()
    w = fac.store.worker("c1")
    assert w.state == "starting", "restarted but not working yet: its SessionStart hook has not come"
    assert fac.store.message(down["id"]).attempts == 0, "not pasted before its input is ready"
    with running_supervisor(factory):  # the channel for its SessionStart hook
        c.release_start()
        wait_for(lambda: fac.store.worker("c1").state == "idle", 60, "the resumed turn to end")
    argv = json.loads((Path(w.worktree) / "claude-argv.json").read_text())
    assert argv[-3:] == ["--resume", "sess-1234", claude.CONTINUE]
    start = c.hooks("SessionStart")[-1]
    assert start["input"]["source"] == "resume"
    context = json.loads(start["stdout"])["hookSpecificOutput"]
    assert context["hookEventName"] == "SessionStart"
    assert "news while you were down" in context["additionalContext"]
    sup.reconcile()
    assert c.seen("news while you were down") == 1
    m = fac.store.message(down["id"])
    assert m.attempts == 0 and m.via == "hook:session-start"
    assert [e["prompt"] for e in c.log() if "prompt" in e][-1] == claude.CONTINUE  # told to go on
    states = [e.payload.get("state") for e in fac.store.events(worker="c1") if e.kind == "hook:session-start"]
    assert states[-1] == "working"  # crashed -> starting -> working, said by the agent itself
