"""Workers: spawn (all or nothing), the pane's environment, status, kill."""

from __future__ import annotations

import json
import os
import subprocess
import time
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
    spawn,
    start_worker,
    status,
    wait_until_exited,
    window_names,
    worker_view,
)

from supervisor.store import Store


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def assert_no_trace_of(root: Path, socket: str, name: str) -> None:
    assert f"fac/{name}" not in branches(root)
    assert not (root / ".fac" / "worktrees" / name).exists()
    assert not (root / ".fac" / "runs" / name).exists()
    assert name not in window_names(socket)
    assert len(git(root, "worktree", "list", "--porcelain").split("\n\n")) == 1
    assert status(root)["workers"] == []


def test_spawn_creates_branch_worktree_and_window(factory: Path, tmux_socket: str) -> None:
    report = spawn(factory, "w1", "sleep 600")

    worktree = factory / ".fac" / "worktrees" / "w1"
    assert report == {
        "name": "w1",
        "role": "worker",
        "runtime": "command",
        "branch": "fac/w1",
        "worktree": str(worktree),
        "window": report["window"],
        "pane": report["pane"],
        "session": session_of(),
        "config_dir": None,  # the command runtime keeps no configuration of its own
        "notes": [],  # nothing was settled on the user's behalf
        "started": [],  # --no-up: only the worker's window, the factory is not started
    }
    assert "fac/w1" in branches(factory)
    assert git(worktree, "symbolic-ref", "--short", "HEAD") == "fac/w1"
    assert git(worktree, "rev-parse", "HEAD") == git(factory, "rev-parse", "main")
    assert (worktree / "system-under-construction" / "README.md").is_file()
    assert window_names(tmux_socket, session_of()) == ["w1"]
    # the human's checkout is untouched
    assert git(factory, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(factory, "status", "--porcelain") == ""


def test_the_pane_runs_in_the_worktree_with_the_fac_environment(factory: Path, tmux_socket: str) -> None:
    cmd = "env > ../../runs/w1/env.txt; pwd -P > ../../runs/w1/pwd.txt; fac --version > ../../runs/w1/v.txt"
    report = spawn(factory, "w1", cmd, "--task", "count the words")
    wait_until_exited(tmux_socket, report["pane"])

    # The pane writes only its worktree and its run directory (the root is read-only in its sandbox).
    run_dir = factory / ".fac" / "runs" / "w1"
    env = read_env(run_dir / "env.txt")
    worktree = factory / ".fac" / "worktrees" / "w1"
    assert env["FAC_ROOT"] == str(factory)
    assert env["FAC_WORKER"] == "w1"
    assert env["FAC_ROLE"] == "worker"
    assert env["FAC_BRANCH"] == "fac/w1"
    assert env["FAC_TASK"] == "count the words"
    assert env["FAC_TMUX_SOCKET"] == tmux_socket
    assert (run_dir / "pwd.txt").read_text().strip() == str(worktree.resolve())
    # `fac` itself is on the pane's PATH, so an agent can run `fac submit`
    assert (run_dir / "v.txt").read_text().startswith("fac, version")

    context = Path(env["FAC_CONTEXT"]).read_text()
    assert "# Role: worker" in context
    assert "count the words" in context
    assert str(worktree) in context


def test_a_task_and_a_command_ending_in_a_semicolon_reach_the_pane_intact(
    factory: Path, tmux_socket: str
) -> None:
    # Regression: tmux reads an argument ending in ";" as the end of a command, so such a task
    # failed the spawn ("unknown command: -e") and `find ... \\;` lost its terminator.
    cmd = 'printf %s "$FAC_TASK" > ../../runs/w1/task.txt; find . -maxdepth 0 -exec echo found {} \\;'
    report = spawn(factory, "w1", cmd, "--task", "fix it;")
    wait_until_exited(tmux_socket, report["pane"])
    assert (factory / ".fac" / "runs" / "w1" / "task.txt").read_text() == "fix it;"
    assert worker_view(factory, "w1")["process"] == "exited 0"
    assert "found ." in (factory / ".fac" / "runs" / "w1" / "pane.log").read_text()


def test_spawn_without_a_name_generates_role_dash_n(factory: Path) -> None:
    first = fac_json("spawn", "worker", "--no-up", "--cmd", "sleep 600", cwd=factory)
    second = fac_json("spawn", "worker", "--no-up", "--cmd", "sleep 600", cwd=factory)
    assert (first["name"], second["name"]) == ("worker-1", "worker-2")
    assert {"fac/worker-1", "fac/worker-2"} <= set(branches(factory))


def test_a_generated_name_skips_names_whose_branch_exists(factory: Path) -> None:
    git(factory, "branch", "fac/reviewer-1")
    report = fac_json("spawn", "reviewer", "--no-up", "--cmd", "sleep 600", cwd=factory)
    assert report["name"] == "reviewer-2"


def test_spawn_from_a_base_ref(factory: Path) -> None:
    git(factory, "checkout", "-q", "-b", "feature")
    (factory / "system-under-construction" / "feature.txt").write_text("on feature\n")
    git(factory, "add", "-A")
    git(factory, "commit", "-q", "-m", "feature work")
    feature = git(factory, "rev-parse", "HEAD")
    git(factory, "checkout", "-q", "main")

    spawn(factory, "w1", "sleep 600", "--base", "feature")

    worktree = factory / ".fac" / "worktrees" / "w1"
    assert git(worktree, "rev-parse", "HEAD") == feature
    assert (worktree / "system-under-construction" / "feature.txt").is_file()
    assert worker_view(factory, "w1")["head"] == feature
    (spawned,) = [e for e in Store.open(factory).events(worker="w1") if e.kind == "spawned"]
    assert spawned.payload["base"] == "feature"


def test_pane_output_stays_readable_after_the_command_exits(factory: Path, tmux_socket: str) -> None:
    # Regression: tmux 3.3 dropped the output of a command that exited before tmux had read it,
    # most often while other windows were being created; a fast crash left an empty pane.
    names = [f"fast{i}" for i in range(4)]
    panes = {n: start_worker(factory, n, f"echo all good from {n}")["pane"] for n in names}
    bad = start_worker(factory, "bad", "echo something broke in bad >&2; exit 3")["pane"]
    for pane in [*panes.values(), bad]:
        wait_until_exited(tmux_socket, pane)

    for name, pane in panes.items():
        assert f"all good from {name}" in capture_pane(tmux_socket, pane)
    assert "something broke in bad" in capture_pane(tmux_socket, bad)
    views = {w["name"]: w for w in status(factory)["workers"]}
    assert {views[n]["process"] for n in names} == {"exited 0"}
    assert views["bad"]["process"] == "exited 3"
    assert set(window_names(tmux_socket, session_of())) == {*names, "bad"}


def test_pane_output_is_logged_and_the_log_outlives_the_window(factory: Path, tmux_socket: str) -> None:
    pane = start_worker(factory, "w1", "echo line one; echo line two")["pane"]
    wait_until_exited(tmux_socket, pane)
    fac_ok("kill", "w1", cwd=factory)
    log = factory / ".fac" / "runs" / "w1" / "pane.log"
    assert "line one" in log.read_text() and "line two" in log.read_text()


def test_status_json_has_the_session_and_every_workers_fields(factory: Path) -> None:
    empty = fac_json("status", cwd=factory)
    expected = {
        "root": str(factory),
        "session": session_of(),
        "session_running": False,
        "main": "main",
        "workers": [],
    }
    assert {k: empty.get(k) for k in expected} == expected
    start_worker(factory, "w1", "sleep 600", task="a task")

    data = fac_json("status", cwd=factory)
    assert data["session_running"] is True
    (w,) = data["workers"]
    assert set(w) >= {
        "name",
        "role",
        "runtime",
        "branch",
        "state",
        "process",
        "window",
        "pane",
        "worktree",
        "task",
        "head",
        "updated_at",
    }
    assert (w["name"], w["role"], w["runtime"], w["branch"]) == ("w1", "worker", "command", "fac/w1")
    assert (w["state"], w["process"], w["task"]) == ("working", "running", "a task")
    assert w["window"].startswith("@") and w["pane"].startswith("%")
    assert w["worktree"] == str(factory / ".fac" / "worktrees" / "w1")
    assert w["head"] == git(factory, "rev-parse", "main")


def test_status_table_shows_workers(factory: Path) -> None:
    assert "no workers" in fac_ok("status", cwd=factory).stdout
    start_worker(factory, "w1", "sleep 600")
    lines = fac_ok("status", cwd=factory).stdout.splitlines()
    assert f"session {session_of()} (up)" in lines[0]
    # a session with a worker but without fac's own processes says so
    assert lines[1].split() == ["supervisor:", "not", "running", "(no", "window)"] + [
        "merge-queue:",
        "not",
        "running",
        "(no",
        "window)",
    ]
    assert "supervisor and merge-queue not running: `fac up` starts them again" in lines[2]
    assert lines[3].split() == ["WORKER", "ROLE", "BRANCH", "STATE", "PROCESS", "WINDOW", "HEAD"]
    assert lines[4].split()[:5] == ["w1", "worker", "fac/w1", "working", "running"]


@pytest.mark.parametrize("step", ["row", "worktree", "context", "window"])
def test_a_failed_spawn_leaves_nothing_behind(factory: Path, tmux_socket: str, step: str) -> None:
    start_worker(factory, "other", "sleep 600")  # a bystander that must survive the rollback

    proc = run_fac(
        "spawn",
        "worker",
        "--no-up",
        "--name",
        "w1",
        "--cmd",
        "sleep 600",
        cwd=factory,
        env={"FAC_FAULT_INJECT": step},
    )

    assert_usage_error(proc, f"injected failure at spawn step {step!r}")
    assert "fac/w1" not in branches(factory)
    assert not (factory / ".fac" / "worktrees" / "w1").exists()
    assert not (factory / ".fac" / "runs" / "w1").exists()
    assert window_names(tmux_socket, session_of()) == ["other"]
    assert [w["name"] for w in status(factory)["workers"]] == ["other"]
    assert sorted(p.name for p in (factory / ".fac" / "worktrees").iterdir()) == ["other"]

    spawn(factory, "w1", "sleep 600")
    assert worker_view(factory, "w1")["process"] == "running"


def test_a_failed_first_spawn_leaves_no_session_behind(factory: Path, tmux_socket: str) -> None:
    proc = run_fac(
        "spawn",
        "worker",
        "--no-up",
        "--name",
        "w1",
        "--cmd",
        "true",
        cwd=factory,
        env={"FAC_FAULT_INJECT": "window"},
    )
    assert_usage_error(proc, "injected failure")
    assert_no_trace_of(factory, tmux_socket, "w1")
    assert status(factory)["session_running"] is False


def test_spawn_from_a_missing_base_fails_cleanly(factory: Path, tmux_socket: str) -> None:
    proc = run_fac(
        "spawn", "worker", "--no-up", "--name", "w1", "--cmd", "true", "--base", "no-such-ref", cwd=factory
    )
    assert_usage_error(proc, "'no-such-ref' is not a commit", "--base")
    assert_no_trace_of(factory, tmux_socket, "w1")
    events = fac_ok("log", "--json", "--worker", "w1", cwd=factory).stdout
    assert '"kind": "spawn-failed"' in events
    start_worker(factory, "w1", "sleep 600")


def test_spawn_refuses_a_name_whose_branch_exists_and_keeps_that_branch(
    factory: Path, tmux_socket: str
) -> None:
    git(factory, "branch", "fac/w1")
    sha = git(factory, "rev-parse", "fac/w1")
    proc = run_fac("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "branch fac/w1 already exists")
    assert git(factory, "rev-parse", "fac/w1") == sha  # the rollback did not delete the user's branch
    assert status(factory)["workers"] == []
    assert "w1" not in window_names(tmux_socket)


def test_kill_stops_the_window_and_keeps_worktree_and_branch(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1", "sleep 600")
    start_worker(factory, "w2", "sleep 600")

    out = fac_ok("kill", "w1", cwd=factory).stdout

    assert "stopped w1" in out
    assert window_names(tmux_socket, session_of()) == ["w2"]
    view = worker_view(factory, "w1")
    assert (view["state"], view["process"], view["window"]) == ("stopped", "no window", None)
    assert (factory / ".fac" / "worktrees" / "w1").is_dir()
    assert "fac/w1" in branches(factory)
    assert worker_view(factory, "w2")["process"] == "running"


def test_kill_rm_removes_worktree_branch_and_row(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1", "sleep 600")
    worktree = factory / ".fac" / "worktrees" / "w1"
    (worktree / "system-under-construction" / "new.txt").write_text("work\n")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", "work in progress")
    last = git(worktree, "rev-parse", "HEAD")

    report = fac_json("kill", "w1", "--rm", cwd=factory)

    assert report == {
        "name": "w1",
        "window_killed": True,
        "removed": True,
        "branch": "fac/w1",
        "last_sha": last,
    }
    assert_no_trace_of(factory, tmux_socket, "w1")
    # the printed sha really recovers the work
    git(factory, "branch", "recovered", last)
    assert git(factory, "show", "recovered:system-under-construction/new.txt") == "work"


def test_kill_rm_refuses_a_dirty_worktree_without_force(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1", "sleep 600")
    worktree = factory / ".fac" / "worktrees" / "w1"
    (worktree / "system-under-construction" / "unsaved.txt").write_text("precious\n")

    proc = run_fac("kill", "w1", "--rm", cwd=factory)

    assert_usage_error(proc, "uncommitted changes", "--force")
    assert (worktree / "system-under-construction" / "unsaved.txt").read_text() == "precious\n"
    assert "fac/w1" in branches(factory)
    assert worker_view(factory, "w1")["process"] == "running"

    fac_ok("kill", "w1", "--rm", "--force", cwd=factory)
    assert_no_trace_of(factory, tmux_socket, "w1")


def test_kill_rm_works_after_a_plain_kill(factory: Path, tmux_socket: str) -> None:
    start_worker(factory, "w1", "sleep 600")
    fac_ok("kill", "w1", cwd=factory)
    out = fac_ok("kill", "w1", "--rm", cwd=factory).stdout
    assert "(it had no window)" in out and "removed worktree and branch fac/w1" in out
    assert_no_trace_of(factory, tmux_socket, "w1")


def test_killing_an_unknown_worker_lists_the_workers(factory: Path) -> None:
    start_worker(factory, "w1", "sleep 600")
    assert_usage_error(run_fac("kill", "nobody", cwd=factory), "no worker named 'nobody'", "workers: w1")


def test_a_check_shows_as_waiting_for_check_and_gives_the_state_back(factory: Path) -> None:
    from supervisor import workers
    from supervisor.factory import Factory

    start_worker(factory, "w1")
    fac = Factory(factory)
    before = fac.worker("w1").state
    with workers.waiting_for_check(fac, "w1"):
        assert fac.worker("w1").state == "waiting-for-check"
    assert fac.worker("w1").state == before


def test_a_humans_check_of_a_workers_tree_leaves_the_workers_state(factory: Path) -> None:
    import subprocess

    from helpers import FAC

    from supervisor.factory import Factory

    info = start_worker(factory, "w1")
    wt = Path(info["worktree"])
    toml = (wt / "factory.toml").read_text()
    blocking = "bash -c 'touch started; while [ ! -e go ]; do sleep 0.05; done'"
    (wt / "factory.toml").write_text(toml.replace('run = "python -m pytest -q"', f'run = "{blocking}"'))
    fac = Factory(factory)
    before = fac.worker("w1").state
    env = {k: v for k, v in os.environ.items() if k != "FAC_WORKER"}
    human = subprocess.Popen([*FAC, "check", "--worker", "w1"], cwd=factory, env=env, text=True)
    try:
        sysdir = wt / "system-under-construction"
        while not (sysdir / "started").exists():
            assert human.poll() is None, "the check ended before its command ran"
            time.sleep(0.05)
        # It used to say waiting-for-check here: the human's check took over w1's state.
        assert fac.worker("w1").state == before
    finally:
        (sysdir / "go").touch()
        human.wait(timeout=120)
    assert fac.worker("w1").state == before


def test_a_state_set_during_the_check_is_kept(factory: Path) -> None:
    from supervisor import workers
    from supervisor.factory import Factory

    start_worker(factory, "w1")
    fac = Factory(factory)
    with workers.waiting_for_check(fac, "w1"):
        fac.store.update_worker("w1", state="needs-human")  # e.g. `fac ask` from a hook meanwhile
    assert fac.worker("w1").state == "needs-human"
    with workers.waiting_for_check(fac, None):  # no worker (`fac check` outside a pane): nothing to do
        pass


def _fac_with_stdin(factory: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    from helpers import FAC

    return subprocess.run([*FAC, *args], cwd=factory, input=stdin, capture_output=True, text=True, timeout=60)


def test_a_task_from_a_file_or_stdin_reaches_the_pane_whole(factory: Path, tmux_socket: str) -> None:
    from supervisor.model import MAX_TASK_BYTES

    # The largest task a pane takes, with the bytes a shell would trip on: tmux still accepts it.
    task = ("fix it; $(not run) `x` 'q' \"d\"\n" * 400)[: MAX_TASK_BYTES - 1] + "."
    assert len(task.encode()) == MAX_TASK_BYTES
    (factory.parent / "task.md").write_text(task, encoding="utf-8")
    cmd = 'printf %s "$FAC_TASK" > "../../runs/$FAC_WORKER/task.txt"'
    a = fac_json(
        "spawn", "worker", "--no-up", "--name", "a", "--cmd", cmd, "--task-file", "../task.md", "--json"
    )
    proc = _fac_with_stdin(
        factory,
        "from stdin\n",
        "spawn",
        "worker",
        "--no-up",
        "--name",
        "b",
        "--cmd",
        cmd,
        "--task",
        "-",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    b = json.loads(proc.stdout)
    for report in (a, b):
        wait_until_exited(tmux_socket, report["pane"])
    assert (factory / ".fac" / "runs" / "a" / "task.txt").read_text(encoding="utf-8") == task
    assert (factory / ".fac" / "runs" / "b" / "task.txt").read_text() == "from stdin\n"


def test_a_task_too_large_for_a_pane_is_refused_up_front_with_a_hint(factory: Path, tmux_socket: str) -> None:
    big = factory.parent / "big.md"
    big.write_text("x" * 110_000)
    proc = run_fac("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "true", "--task-file", str(big))
    assert_usage_error(proc, "the task is 110000 bytes", "at most 8000", "put the details in a file")
    assert "fac/w1" not in branches(factory)
    proc = _fac_with_stdin(factory, "y" * 9000, "spawn", "worker", "--no-up", "--cmd", "true", "--task", "-")
    assert proc.returncode == 2 and "the task is 9000 bytes" in proc.stderr, proc.stderr
    missing = run_fac("spawn", "worker", "--no-up", "--cmd", "true", "--task-file", "nowhere.md")
    assert_usage_error(missing, "cannot read the task file nowhere.md", "check the path")
    both = run_fac("spawn", "worker", "--no-up", "--cmd", "true", "--task", "t", "--task-file", str(big))
    assert_usage_error(both, "pass the task once")


def test_task_add_takes_a_task_from_a_file_or_stdin_and_refuses_one_too_large(factory: Path) -> None:
    (factory.parent / "t.md").write_text("from a file\n")
    fac_ok("task", "add", "--task-file", str(factory.parent / "t.md"), "--cmd", "true")
    proc = _fac_with_stdin(factory, "from stdin", "task", "add", "-", "--cmd", "true")
    assert proc.returncode == 0, proc.stderr
    proc = _fac_with_stdin(factory, "via --task -", "task", "add", "--task", "-", "--cmd", "true")
    assert proc.returncode == 0, proc.stderr
    texts = [t["text"] for t in fac_json("task", "--json")]
    assert texts == ["from a file\n", "from stdin", "via --task -"]
    (factory.parent / "big.md").write_text("x" * 110_000)
    big = run_fac("task", "add", "--task-file", str(factory.parent / "big.md"), "--cmd", "true")
    assert_usage_error(big, "the task is 110000 bytes", "put the details in a file")
    assert_usage_error(run_fac("task", "add", "--cmd", "true"), "no task given", "--task-file")
    assert len(fac_json("task", "--json")) == 3


@pytest.mark.parametrize(
    ("command", "program", "script"),
    [
        ("bash ./agent.sh", "bash", "./agent.sh"),
        ("bash --norc -e agent.sh --fast", "bash", "agent.sh"),
        ("bash -c 'exit 3'", "bash", None),  # inline code: no script file
        ("python3 -m agent", "python3", None),
        ("python3 -u run.py", "python3", "run.py"),
        ("python3 -W ignore run.py", "python3", None),  # an option fac does not read: not guessed
        ("sleep 600", "sleep", None),
        ("FOO=1 BAR=2 ./run.sh --x", "./run.sh", None),
        ("exec ./run.sh", "./run.sh", None),
        ("tool>out.log", "tool", None),
        ("echo broken; exit 7", "echo", None),
        ("cd sub && ./run.sh", None, None),  # bash runs `cd` itself: not checked
        ("if true; then x; fi", None, None),
        ("'unbalanced", None, None),
    ],
)
def test_what_a_command_line_runs_first(command: str, program: str | None, script: str | None) -> None:
    from supervisor.runtimes.command import Needs, needs

    assert needs(command) == Needs(program, script)


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("bash ./missing.sh", "script not found: ./missing.sh (not committed in main"),
        ("no-such-program-4711 --flag", "command not found: no-such-program-4711"),
        ("./system-under-construction/README.md", "not executable: ./system-under-construction/README.md"),
        ("sh /nonexistent/agent.sh", "script not found: /nonexistent/agent.sh"),
    ],
)
def test_spawn_refuses_a_program_that_cannot_start_before_creating_anything(
    factory: Path, tmux_socket: str, command: str, why: str
) -> None:
    proc = run_fac("spawn", "worker", "--name", "w1", "--cmd", command, cwd=factory)

    assert_usage_error(proc, f"cannot start w1: {why}", "hint: fix the --cmd")
    assert "fac/w1" not in branches(factory)
    assert not (factory / ".fac" / "worktrees" / "w1").exists()
    assert not (factory / ".fac" / "runs" / "w1").exists()
    assert status(factory)["workers"] == [] and status(factory)["session_running"] is False


def test_spawn_accepts_a_committed_script_and_a_program_on_path(factory: Path, tmux_socket: str) -> None:
    agent = factory / "agent.sh"
    agent.write_text("sleep 600\n")
    git(factory, "add", "agent.sh")
    git(factory, "commit", "-qm", "an agent script")
    spawn(factory, "w1", "bash ./agent.sh")
    spawn(factory, "w2", "sleep 600")
    assert worker_view(factory, "w1")["process"] == "running"
    assert worker_view(factory, "w2")["process"] == "running"
