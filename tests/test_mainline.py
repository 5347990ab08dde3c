"""Main moves only through fac: the queue and the delta commands record every sha they write to main,
and before each round the queue compares. A move by anything else (a human's own commit, a worker's
`git update-ref` from its worktree) is recorded with who and what, and judged by the gate before
anything builds on it: red stops the line with that explanation, green is adopted."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import fac_json, git, run_fac, wait_for
from queue_helpers import (
    SUT,
    commit,
    entries,
    human_commit,
    passing_test,
    run_queue,
    spawn_worker,
    submit,
)

from supervisor.factory import Factory

CODE = f"{SUT}/textstats/__init__.py"
GOOD_LINE_COUNT = 'return text.count("\\n") + (0 if text.endswith("\\n") else 1)'


def events(root: Path, kind: str) -> list[dict[str, object]]:
    return [e.payload for e in Factory(root).store.events() if e.kind == kind]


def main_sha(root: Path) -> str:
    return git(root, "rev-parse", "main")


def test_a_worker_moving_main_with_update_ref_is_caught_gated_and_stops_the_line(
    factory: Path, tmp_path: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queue has run once: main as it stood is fac's starting point, and what fac writes is recorded.
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: a test")
    submit("w1")
    run_queue(factory)
    assert entries(factory)["w1"].state == "merged"
    known = main_sha(factory)

    # A hostile worker that is not isolated (FAC_SANDBOX=none; in its sandbox the factory's git
    # directory is out of reach, tests/test_isolation.py): a real bug (main's tests catch it),
    # committed, its objects fetched into the factory and main moved to it directly.
    done = tmp_path / "moved"
    src = (factory / CODE).read_text()
    assert GOOD_LINE_COUNT in src
    buggy = tmp_path / "buggy.py"  # a last line without a newline is not counted
    buggy.write_text(src.replace(GOOD_LINE_COUNT, 'return text.count("\\n")'))
    script = tmp_path / "hostile.sh"
    script.write_text(
        "set -e\n"
        f"cp {buggy} {CODE}\n"
        "git commit -qam 'mallory: simpler line count'\n"
        'git --git-dir="$FAC_ROOT/.git" fetch -q "$PWD" HEAD\n'
        'git --git-dir="$FAC_ROOT/.git" update-ref refs/heads/main "$(git rev-parse HEAD)"\n'
        f"touch {done}\n"
    )
    monkeypatch.setenv("FAC_SANDBOX", "none")
    spawn_worker(factory, "mallory", cmd=f"sh {script}")
    monkeypatch.delenv("FAC_SANDBOX")
    wait_for(done.exists, timeout=60, message="the hostile worker to move main")
    bad = main_sha(factory)
    assert bad != known and GOOD_LINE_COUNT not in git(factory, "show", f"main:{CODE}")
    # An honest worker submits meanwhile: it must not be built on the bug.
    commit(spawn_worker(factory, "w2"), passing_test("w2"), "w2: a test")
    submit("w2")

    proc = run_fac("queue", "run", "--once", timeout=180)  # the real queue
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (moved,) = events(factory, "main-moved-outside")
    assert (moved["old"], moved["new"], moved["commits"]) == (known, bad, 1)
    assert moved["subject"] == "mallory: simpler line count" and moved["author"], moved
    ln = fac_json("status")["line"]
    assert ln["state"] == "stopped" and ln["main_sha"] == bad
    reason = str(ln["reason"])
    assert f"moved outside fac from {known[:10]} to {bad[:10]}" in reason, reason
    assert "mallory: simpler line count" in reason and "and it is red: tests" in reason, reason
    assert "moved outside fac" in proc.stdout
    line_cmd = run_fac("line")
    assert line_cmd.returncode == 1 and "moved outside fac" in line_cmd.stdout
    # Nothing was built on it: main is still the bug itself, the honest entry waits (not blamed).
    assert main_sha(factory) == bad
    assert entries(factory)["w2"].state == "queued"
    assert events(factory, "main-adopted") == []
    assert Factory(factory).store.last_main() == bad  # judged (red), so recorded: not judged twice
    # A second round does not judge it again: the line stays stopped for the same reason.
    run_fac("queue", "run", "--once", timeout=180)
    assert len(events(factory, "main-moved-outside")) == 1


def test_a_humans_own_green_commit_on_main_is_adopted_and_built_on(factory: Path) -> None:
    run_queue(factory)  # the starting point
    start = main_sha(factory)
    mine = human_commit(factory, {f"{SUT}/NOTES.md": "notes\n"}, "human: notes")
    commit(spawn_worker(factory, "w1"), passing_test("w1"), "w1: a test")
    submit("w1")

    run_queue(factory)

    (moved,) = events(factory, "main-moved-outside")
    assert (moved["old"], moved["new"], moved["subject"]) == (start, mine, "human: notes")
    assert events(factory, "main-adopted") == [{"sha": mine, "old": start}]
    assert fac_json("status")["line"]["state"] == "running"
    assert entries(factory)["w1"].state == "merged"
    assert git(factory, "rev-parse", "main^1") == mine  # built on the human's commit


def test_a_delta_command_does_not_commit_on_top_of_an_unjudged_move(factory: Path) -> None:
    run_queue(factory)
    human_commit(factory, {f"{SUT}/NOTES.md": "notes\n"}, "human: notes")
    proc = run_fac("delta", "new", "Count emoji", "--check", "tests")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "moved outside fac" in proc.stderr and "not judged yet" in proc.stderr
    assert "fac verify" in proc.stderr
    fac_json("verify", "--json")  # a human runs the gate on it: green, adopted
    fac_json("delta", "new", "Count emoji", "--check", "tests")


@pytest.mark.parametrize("name", [".git", ".GIT"])
def test_a_malformed_object_in_an_agents_repository_is_refused_at_submit(
    factory: Path, tmux_socket: str, name: str
) -> None:
    """A hostile agent writes a tree git itself would never make (an entry named .git: a checkout of it
    would plant a git directory) and submits it: the fetch checks every object and takes nothing."""
    import subprocess

    from helpers import assert_usage_error, running_supervisor

    wt = spawn_worker(factory, "mallory")
    before = git(factory, "rev-parse", "refs/heads/fac/mallory")

    def write(kind: str, data: bytes) -> str:
        argv = ["git", "hash-object", "-t", kind, "-w", "--literally", "--stdin"]
        return (
            subprocess.run(argv, cwd=wt, input=data, capture_output=True, check=True).stdout.decode().strip()
        )

    blob = write("blob", b"[core]\n\tbare = false\n")
    tree = write("tree", f"100644 {name}\0".encode() + bytes.fromhex(blob))
    bad = git(wt, "commit-tree", tree, "-p", "HEAD", "-m", "an innocent change")
    git(wt, "update-ref", "refs/heads/fac/mallory", bad)

    pane = {"FAC_SOCKET": str(factory / ".fac" / "runs" / "mallory" / "fac.sock"), "FAC_WORKER": "mallory"}
    with running_supervisor(factory):
        wait_for(lambda: Path(pane["FAC_SOCKET"]).exists(), 30, "the channel's socket")
        proc = run_fac("submit", cwd=wt, env=pane)
    assert_usage_error(proc, "fac/mallory was not taken: git's object check refused object", "hasDotgit")
    assert git(factory, "rev-parse", "refs/heads/fac/mallory") == before
    assert subprocess.run(["git", "cat-file", "-e", tree], cwd=factory).returncode != 0
    assert subprocess.run(["git", "cat-file", "-e", bad], cwd=factory).returncode != 0
    assert "an innocent change" not in git(factory, "log", "--format=%s", "main")
    assert Factory(factory).store.queue() == []


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        (
            "error: object d41931f2572e7a49540805018df910e55efc9263: hasDotgit: contains '.git'\n"
            "fatal: fsck error in packed object\nfatal: index-pack failed",
            "object d41931f257 (hasDotgit: contains '.git')",
        ),
        ("fatal: couldn't find remote ref refs/heads/fac/w1", None),
    ],
)
def test_a_refused_object_is_named_in_a_few_words(stderr: str, said: str | None) -> None:
    from supervisor.worktrees import fsck_refusal

    assert fsck_refusal(stderr) == said
