"""The real Claude Code (the pinned version `scripts/setup --test` installs in .cache/claude-code/)
in a real factory: `fac spawn --runtime claude`, real tmux on the private socket, real git, the real
supervisor and merge queue, and the project's fake Messages API on 127.0.0.1 as the model. Claude
Code's own tools (Write, Read, Edit, Bash) do the work; only the model's choices are scripted.

Nothing is written outside the test's temp dirs: HOME, CLAUDE_CONFIG_DIR, CLAUDE_CODE_TMPDIR and
XDG_DATA_HOME point into them, the key is the fake's, and Claude's non-essential traffic is off.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import capture_pane, fac_json, fac_ok, git, run_fac, running_supervisor, session_of, wait_for
from queue_helpers import human_commit

from supervisor.factory import Factory
from supervisor.fake_anthropic import DEFAULT_KEY, FakeAnthropic, text, tool, turn
from supervisor.runtimes.claude import TESTED_VERSION

REPO = Path(__file__).resolve().parent.parent
CLAUDE_BIN = REPO / ".cache" / "claude-code" / TESTED_VERSION / "node_modules" / ".bin"
SUT = "system-under-construction"
CODE = '''from textstats import words


def unique_words(text: str) -> int:
    """How many different words `text` has."""
    return len(set(words(text)))
'''
TEST = """from textstats.unique import unique_words


def test_unique_words_counts_each_word_once():
    assert unique_words("a b A c") == 3
"""


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The pinned Claude Code's bin directory; CI installs it (scripts/setup --test), so CI never skips."""
    if not (CLAUDE_BIN / "claude").exists():
        why = f"Claude Code {TESTED_VERSION} is not in {CLAUDE_BIN}: run `bash scripts/setup --test`"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return CLAUDE_BIN


@pytest.fixture
def fake(
    claude_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: Path
) -> Iterator[FakeAnthropic]:
    """The fake API, and an environment in which the real `claude` reaches only it and temp dirs."""
    for name in ("claude-home", "claude-config", "claude-tmp", "xdg-data"):
        (tmp_path / name).mkdir()
    with FakeAnthropic() as f:
        monkeypatch.setenv("PATH", f"{claude_bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("HOME", str(tmp_path / "claude-home"))
        monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-config"))
        monkeypatch.setenv("CLAUDE_CODE_TMPDIR", str(tmp_path / "claude-tmp"))
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
        monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", DEFAULT_KEY)
        for var in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL"):
            monkeypatch.delenv(var, raising=False)
        yield f


def spawn_claude(root: Path, name: str, task: str) -> dict[str, Any]:
    """`fac spawn worker --runtime claude` as a user types it: it starts the factory (supervisor, queue)."""
    return fac_json("spawn", "worker", "--runtime", "claude", "--name", name, "--task", task, cwd=root)


def commit_and_submit(message: str) -> list[dict[str, Any]]:
    return [
        turn(tool("Bash", command=f"git add -A {SUT}", description="stage the change")),
        turn(tool("Bash", command=f"git commit -q -m '{message}'", description="commit")),
        turn(
            text("Committed; submitting to the merge queue."),
            tool("Bash", command="fac submit", description="submit"),
        ),
    ]


def screen(root: Path, socket: str, name: str) -> str:
    return capture_pane(socket, f"={session_of(root)}:={name}")


def on_main(root: Path, path: str) -> bool:
    probe = ["git", "cat-file", "-e", f"main:{path}"]
    return subprocess.run(probe, cwd=root, stderr=subprocess.DEVNULL).returncode == 0


def wait_watching(
    predicate: Callable[[], Any], timeout: float, what: str, root: Path, socket: str, name: str = "c1"
) -> Any:
    """wait_for, and on a time-out the worker's screen and the factory's log in the failure."""
    try:
        return wait_for(predicate, timeout, what, interval=0.2)
    except AssertionError as e:
        log = run_fac("log", cwd=root).stdout
        raise AssertionError(
            f"{e}\n--- pane {name}:\n{screen(root, socket, name)}\n--- fac log:\n{log}"
        ) from None


def test_real_claude_code_writes_tests_commits_submits_and_its_branch_merges(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    wt = Factory(factory).worktree_path("c1")
    unique, test = wt / SUT / "textstats/unique.py", wt / SUT / "tests/test_unique.py"
    fake.add(
        turn(
            text("I'll look at textstats first."),
            tool("Read", file_path=str(wt / SUT / "textstats/__init__.py")),
        ),
        turn(
            text("Writing unique_words and its test."),
            tool("Write", file_path=str(unique), content=CODE.replace("different", "distinct")),
            tool("Write", file_path=str(test), content=TEST),
        ),
        turn(tool("Edit", file_path=str(unique), old_string="distinct", new_string="different")),
        turn(tool("Bash", command="fac check", description="run the inner checks")),
        *commit_and_submit("Add unique_words"),
        turn(text("Submitted.")),
        turn(text("Merged; nothing more to do.")),  # the queue's MERGED note may come in as a prompt
    )
    start = time.monotonic()
    res = spawn_claude(factory, "c1", "Add unique_words(text): how many different words")
    assert res["runtime"] == "claude" and "first-run dialogs" in " ".join(res["notes"])
    wait_watching(
        lambda: on_main(factory, f"{SUT}/textstats/unique.py"),
        240,
        "the branch to merge",
        factory,
        tmux_socket,
    )
    seconds = time.monotonic() - start
    assert git(factory, "show", f"main:{SUT}/textstats/unique.py") == CODE.rstrip("\n")
    assert git(factory, "show", f"main:{SUT}/tests/test_unique.py") == TEST.rstrip("\n")
    # Claude Code's own tools ran and their real results went back to the model.
    results = [r["content"] for i in range(1, len(fake.requests)) for r in fake.tool_results(i)]
    flat = "\n".join(str(r) for r in results)
    assert "def words(text: str)" in flat  # Read
    assert "queued fac/c1" in flat or "submitted" in flat.lower()  # fac submit's own output
    assert not fake.rejected, fake.rejected
    # It was a conversation: a system prompt with fac's context, Claude Code's own tools offered.
    first = fake.requests[0]
    assert {"Write", "Edit", "Read", "Bash"} <= {t["name"] for t in first["tools"]}
    assert "You are a worker in a software factory run by fac" in str(first["system"])
    state = wait_for(
        lambda: (w := Factory(factory).store.worker("c1")) and w.state in ("merged", "done") and w.state,
        60,
        "the worker to show merged",
    )
    assert state in ("merged", "done")
    loop = "spawn -> read -> write -> edit -> check -> commit -> submit -> merged"
    print(f"\nreal Claude Code {TESTED_VERSION}: {loop}: {seconds:.1f}s")


GATE_CHECK = """import sys

sys.path.insert(0, "system-under-construction")
from textstats.unique import unique_words

got = unique_words("a b A c")
if got != 3:
    print(f"unique_words('a b A c') is {got}, want 3 (each word once, case-insensitive)")
    sys.exit(1)
"""


def test_a_red_verdict_reaches_real_claude_which_fixes_it_and_the_fix_merges(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    # main's gate has a check the agent's own tests do not: its first submission passes the inner
    # checks (the Stop hook lets it stop) and goes red in the queue.
    toml = (factory / "factory.toml").read_text()
    toml += '\n[checks.unique]\nrun = "python gate/unique_check.py"\nstage = ["gate"]\n'
    human_commit(factory, {"factory.toml": toml, "gate/unique_check.py": GATE_CHECK}, "human: gate check")
    wt = Factory(factory).worktree_path("c2")
    unique = wt / SUT / "textstats/unique.py"
    buggy = CODE.replace("len(set(words(text)))", "len(words(text))")
    fake.add(
        turn(
            tool("Write", file_path=str(unique), content=buggy),
            tool(
                "Write",
                file_path=str(wt / SUT / "tests/test_unique.py"),
                content=TEST.replace("a b A c", "a b c"),
            ),
        ),
        *commit_and_submit("Add unique_words"),
        turn(text("Submitted.")),
        # The RED note arrives as the next prompt.
        turn(
            text("The gate is red: unique_words counts repeats. Fixing."),
            tool(
                "Edit",
                file_path=str(unique),
                old_string="len(words(text))",
                new_string="len(set(words(text)))",
            ),
        ),
        *commit_and_submit("unique_words: count each word once"),
        turn(text("Fixed and resubmitted.")),
        turn(text("Merged; nothing more to do.")),
    )
    spawn_claude(factory, "c2", "Add unique_words(text): how many different words")
    wait_watching(
        lambda: on_main(factory, f"{SUT}/textstats/unique.py"),
        300,
        "the fix to merge",
        factory,
        tmux_socket,
        "c2",
    )
    assert git(factory, "show", f"main:{SUT}/textstats/unique.py") == CODE.rstrip("\n")
    assert git(factory, "log", "-1", "--format=%s", "fac/c2") == "unique_words: count each word once"
    fac = Factory(factory)
    assert [e.state for e in fac.store.queue()][:2] == ["red", "merged"]
    # What the model read after its first submission: fac's RED note with the failing check's words.
    prompts = [str(r["messages"][-1]["content"]) for r in fake.requests]
    red = next(p for p in prompts if "RED" in p)
    assert "fac/c2" in red and "unique" in red and "want 3" in red


def fac_processes(root: Path, name: str) -> list[int]:
    """Processes started for worker `name` of the factory at `root` (fac puts both in their env)."""
    found = []
    want = {f"FAC_WORKER={name}".encode(), f"FAC_ROOT={root}".encode()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env:
            found.append(int(proc.name))
    return found


def test_an_idle_real_claude_shows_idle_and_kill_rm_leaves_no_process(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    toml = (factory / "factory.toml").read_text() + "\n[supervisor]\ntick = 0.5\n"
    human_commit(factory, {"factory.toml": toml}, "human: a quick supervisor")
    fake.add(turn(text("I have read my task and will wait for more instructions.")))
    spawn_claude(factory, "c3", "Wait for instructions")
    fac = Factory(factory)
    wait_watching(
        lambda: fac.store.worker("c3").state == "idle", 120, "c3 to be idle", factory, tmux_socket, "c3"
    )
    view = next(w for w in fac_json("status", cwd=factory)["workers"] if w["name"] == "c3")
    assert view["state"] == "idle" and view["process"] == "running" and view["todo"] is None
    claude = [
        pid for pid in fac_processes(factory, "c3") if "claude" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert claude, "the real claude runs in c3's pane"

    fac_ok("kill", "c3", "--rm", "--force", cwd=factory)
    # The supervisor keeps running its passes (every 0.5 s here); through several of them, nothing of
    # c3 comes back: no window, no process, no row.
    for _ in range(3):
        wait_for(lambda: not fac_processes(factory, "c3"), 30, "c3's processes to end")
        time.sleep(1)
    assert not fac_processes(factory, "c3")
    assert fac.store.worker("c3") is None
    assert "c3" not in [p.window_name for p in fac.panes()]
    assert "restarted" not in [e.kind for e in fac.store.events(worker="c3")]


def test_a_real_permission_prompt_shows_waiting_for_human_with_what_to_do(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    # A command outside fac's allow list: Claude Code asks before it runs it.
    ask = "curl -s http://127.0.0.1:9/status"
    fake.add(
        turn(text("Let me ask the service."), tool("Bash", command=ask, description="query the service"))
    )
    spawn_claude(factory, "c4", "Is the service up?")
    fac = Factory(factory)
    wait_watching(
        lambda: fac.store.worker("c4").state == "waiting-for-human",
        120,
        "the permission prompt",
        factory,
        tmux_socket,
        "c4",
    )
    view = next(w for w in fac_json("status", cwd=factory)["workers"] if w["name"] == "c4")
    assert "fac attach c4" in view["todo"] and "permission" in view["todo"].lower()
    assert "curl" in screen(factory, tmux_socket, "c4")  # the prompt is still open, unanswered
    assert len(fake.requests) == 1  # nothing answered it on the human's behalf


# --- messages: never typed into a dialog, and a restart that continues ---


MARKER_COMMAND = "python3 -c \"open('approved-by-human.txt', 'w').close()\""


def spawn_claude_alone(root: Path, name: str, task: str) -> dict[str, Any]:
    """The worker only (no queue, no supervisor window): the test runs the supervisor itself, in a
    thread while Claude's hooks need their channel (`running_supervisor`), and passes of its own."""
    return fac_json(
        "spawn", "worker", "--no-up", "--runtime", "claude", "--name", name, "--task", task, cwd=root
    )


def seen_by_model(fake: FakeAnthropic, needle: str, roles: tuple[str, ...] = ("user", "system")) -> int:
    """How many times `needle` is in the `roles` turns of the conversation the model was last sent.

    Claude Code 2.1.332 gives SessionStart's additionalContext as a system-role note, and a Stop
    hook's reason twice: in a user-role reminder and again in a system-role note of its own (its
    rendering of one delivery)."""
    convo = [r for r in fake.requests if r.get("tools")]  # the agent's own requests, not title probes
    if not convo:
        return 0
    return sum(str(m["content"]).count(needle) for m in convo[-1]["messages"] if m["role"] in roles)


def test_real_claude_a_note_sent_while_a_permission_prompt_is_open_is_not_typed_into_it(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    from supervisor.daemon import Supervisor

    wt = Factory(factory).worktree_path("c1")
    fake.add(
        turn(
            text("I need to create a marker file."),
            # not in the allow list, and not an edit: Claude Code asks before it runs this
            tool("Bash", command=MARKER_COMMAND, description="create the marker"),
        ),
        turn(text("Created the marker.")),
        turn(text("Noted the message.")),
    )
    with running_supervisor(factory):  # Claude's hooks speak through the worker's channel
        spawn_claude_alone(factory, "c1", "Create approved-by-human.txt")
        fac = Factory(factory)
        wait_watching(
            lambda: "Do you want to proceed?" in screen(factory, tmux_socket, "c1"),
            120,
            "the permission prompt",
            factory,
            tmux_socket,
        )
        note = "NOTE-WHILE-DIALOG please also update the README"
        sent = fac_json("send", "c1", note, cwd=factory)
        assert sent["pasted"] is False, sent  # a dialog is open (or it is mid-turn): not typed
        Supervisor(fac).reconcile()
        assert fac.store.message(sent["id"]).attempts == 0
        assert note not in screen(factory, tmux_socket, "c1")
        # The human approves the command: their answer, not the note, answered the prompt.
        subprocess.run(
            ["tmux", "-L", tmux_socket, "send-keys", "-t", f"={session_of(factory)}:=c1", "1"], check=True
        )
        wait_watching(
            lambda: (wt / "approved-by-human.txt").exists(), 60, "the approved command", factory, tmux_socket
        )
        # The turn ends; the Stop hook gives the note to the model, once, and that is its receipt.
        wait_watching(
            lambda: fac.store.message(sent["id"]).acked_at and seen_by_model(fake, note),
            120,
            "the note to reach the model",
            factory,
            tmux_socket,
        )
        m = fac.store.message(sent["id"])
        assert m.via == "hook:stop" and m.attempts == 0
        assert seen_by_model(fake, note, roles=("user",)) == 1
        assert not fake.rejected, fake.rejected


def test_real_claude_a_message_sent_while_it_is_down_arrives_after_its_restart_exactly_once(
    factory: Path, fake: FakeAnthropic, tmux_socket: str
) -> None:
    from supervisor.daemon import Supervisor
    from supervisor.runtimes.claude import CONTINUE

    fake.add(turn(text("Ready; waiting for instructions.")))
    with running_supervisor(factory):  # Claude's hooks speak through the worker's channel
        res = spawn_claude_alone(factory, "c1", "Wait for instructions")
        fac = Factory(factory)
        wait_watching(
            lambda: fac.store.worker("c1").state == "idle", 120, "its first turn to end", factory, tmux_socket
        )
    # Down while Claude crashes, so nothing restarts it before the message is sent; this test's own
    # passes restart it, and the supervisor runs again for the resumed process's hooks.
    session = fac.store.worker("c1").session_id
    assert session
    pid = int(tmux_live_pid(tmux_socket, res["pane"]))
    os.kill(pid, 9)  # a crash
    wait_for(lambda: [p for p in fac.panes() if p.window_name == "c1" and p.dead], 30, "the crash")
    news = "NEWS-WHILE-DOWN the API moved to v2"
    down = fac_json("send", "c1", news, cwd=factory)
    assert down["pasted"] is False
    fake.add(turn(text("Resumed; I read the news and will use v2.")))
    sup = Supervisor(fac)
    wait_for(lambda: sup.reconcile() and fac.store.worker("c1").restarts == 1, 60, "the restart")
    events = [e.kind for e in fac.store.events(worker="c1")]
    assert "crashed" in events and "restarted" in events
    with running_supervisor(factory):
        wait_watching(
            lambda: [e for e in fac.store.events(worker="c1") if e.kind == "hook:stop"][1:],
            180,
            "the resumed turn to end",
            factory,
            tmux_socket,
        )
        for _ in range(3):  # more supervisor passes: nothing is pasted afterwards either
            sup.reconcile()
    m = fac.store.message(down["id"])
    assert m.acked_at is not None and m.attempts == 0 and m.via == "hook:session-start", m
    assert seen_by_model(fake, news) == 1
    assert seen_by_model(fake, CONTINUE) == 1  # told to go on
    # the same conversation: its turn before the crash is in what the model was sent
    assert seen_by_model(fake, "Ready; waiting for instructions.", roles=("assistant",)) == 1
    kinds = [(e.kind, e.payload.get("state")) for e in fac.store.events(worker="c1")]
    after = kinds[[k for k, _ in kinds].index("restarted") :]
    assert (
        "hook:session-start",
        "working",
    ) in after  # crashed -> starting -> working: the last said by Claude itself
    assert not fake.rejected, fake.rejected


def tmux_live_pid(socket: str, pane: str) -> str:
    out = subprocess.run(
        ["tmux", "-L", socket, "display-message", "-p", "-t", pane, "#{pane_pid}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()
