"""Agents in sandboxed panes on repositories of their own: what a hostile agent tries, and what it gets.

Each hostile test spawns real workers (real tmux on the private socket, real bubblewrap) whose pane
runs a script that attacks the factory the way an agent with a shell would, and logs what each
attempt did into its own run directory; the test then looks at the factory from outside (main, the
store, the factory's git directory, the other worker's tree, factory.toml) and runs the real queue.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from helpers import (
    UNCONFINED,
    fac_json,
    git,
    needs_bwrap,
    pane_script,
    run_fac,
    running_supervisor,
    wait_for,
    wait_until_exited,
)
from queue_helpers import (
    SUT,
    commit,
    entries,
    failing_test,
    human_commit,
    passing_test,
    run_queue,
    runs,
    spawn_worker,
    submit,
)

from supervisor import isolation, sandbox, worktrees
from supervisor.factory import Factory


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attempts(root: Path, worker: str) -> dict[str, str]:
    """What each attempt of a hostile pane printed: `name: exit N` lines in its run directory."""
    log = root / ".fac" / "runs" / worker / "attempts.log"
    out = {}
    for line in log.read_text().splitlines():
        name, _, rest = line.partition(": ")
        out[name] = rest
    return out


# One line per attempt: its name, then its command; the pane logs `name: exit N` for each.
ATTACKS = {
    "move-main-in-own-repo": "git update-ref refs/heads/main HEAD",
    "move-factory-main": 'git --git-dir="$FAC_ROOT/.git" update-ref refs/heads/main HEAD',
    "see-store": 'test -e "$FAC_ROOT/.fac/state.db"',
    "write-green-row": (
        "python3 -c \"import sqlite3,os; db=sqlite3.connect(os.environ['FAC_ROOT']+'/.fac/state.db');"
        " db.execute('create table if not exists check_runs(x)'); db.execute('insert into check_runs"
        " values (1)'); db.commit()\""
    ),
    "plant-factory-hook": (
        'mkdir -p "$FAC_ROOT/.git/hooks" && printf \'#!/bin/sh\\ntouch "$FAC_ROOT/pwned"\\n\''
        ' > "$FAC_ROOT/.git/hooks/reference-transaction"'
    ),
    "set-factory-config": 'git config --file "$FAC_ROOT/.git/config" core.fsmonitor "touch $FAC_ROOT/pwned"',
    "see-victim-tree": 'test -e "$FAC_ROOT/.fac/worktrees/victim/README.md"',
    "edit-victim-tree": f'echo "bug" >> "$FAC_ROOT/.fac/worktrees/victim/{SUT}/textstats/__init__.py"',
    "edit-factory-toml": 'echo "[queue]" >> "$FAC_ROOT/factory.toml"',
    "see-home": 'test -n "$(ls -A "$HOME")"',
    "read-factory-objects": "git cat-file -e {main}",
    # Its own repository is its own: hooks and config that would run a program on whoever uses it.
    "plant-own-hooks": (
        # A filter whose clean program a plain `git status` runs on a tracked file whose stat changed.
        'git config filter.evil.clean "touch $FAC_ROOT/pwned; cat"'
        " && echo '* filter=evil' > .gitattributes && git add .gitattributes"
        " && git commit -q -m attributes && sleep 1 && touch README.md && echo x > untracked.txt"
        # Hooks and an fsmonitor for whoever runs git here next (they would fail in its own sandbox);
        # its repository starts without a hooks directory (no template), so the attacker makes one.
        " && mkdir -p .git/hooks"
        " && printf '#!/bin/sh\\ntouch \"$FAC_ROOT/pwned\"\\n' > .git/hooks/reference-transaction"
        " && chmod +x .git/hooks/reference-transaction"
        " && cp .git/hooks/reference-transaction .git/hooks/pre-commit"
        ' && git config core.fsmonitor "touch $FAC_ROOT/pwned"'
        " && git config core.hooksPath .git/hooks"
    ),
}


def hostile_script(main: str, prologue: str = "") -> str:
    lines = ["set +e", prologue]
    for name, cmd in ATTACKS.items():
        lines.append(
            f'( {cmd.replace("{main}", main)} ) >/dev/null 2>&1; echo "{name}: exit $?" >> '
            '"../../runs/$FAC_WORKER/attempts.log"'
        )
    lines.append('echo done > "../../runs/$FAC_WORKER/finished"')
    return "\n".join(lines) + "\n"


@needs_bwrap
def test_a_hostile_pane_cannot_reach_main_the_store_the_git_dir_another_tree_or_the_root(
    factory: Path, tmux_socket: str
) -> None:
    fac = Factory(factory)
    victim = spawn_worker(factory, "victim")
    victim_file = victim / SUT / "textstats" / "__init__.py"
    before = {
        "main": git(factory, "rev-parse", "main"),
        "toml": sha256(factory / "factory.toml"),
        "victim": sha256(victim_file),
        "config": sha256(factory / ".git" / "config"),
    }
    # It commits an honest-looking change first, then attacks (planting hooks in its own repository last).
    change = (
        f"mkdir -p {SUT}/tests && printf 'def test_attacker():\\n    assert True\\n'"
        f" > {SUT}/tests/test_attacker.py && git add -A {SUT} && git commit -q -m 'honest-looking change'"
    )
    script = pane_script(factory, "hostile.sh", hostile_script(before["main"], change))
    attacker = spawn_worker(factory, "attacker", f"bash {script}")
    pane = fac.store.worker("attacker").pane_id  # type: ignore[union-attr]
    wait_until_exited(tmux_socket, pane, timeout=30)

    got = attempts(factory, "attacker")
    assert set(got) == set(ATTACKS), got
    # Its own main moved (its repository is its own); nothing else worked.
    assert got.pop("move-main-in-own-repo") == "exit 0"
    assert got.pop("read-factory-objects") == "exit 0", "the agent repository borrows the factory's objects"
    assert got.pop("plant-own-hooks") == "exit 0"
    assert all(v != "exit 0" for v in got.values()), got

    assert git(factory, "rev-parse", "main") == before["main"]
    assert git(attacker, "rev-parse", "main") == git(attacker, "rev-parse", "HEAD~1")  # its own main moved
    assert sha256(factory / "factory.toml") == before["toml"]
    assert sha256(victim_file) == before["victim"]
    assert sha256(factory / ".git" / "config") == before["config"]
    assert not (factory / ".git" / "hooks" / "reference-transaction").exists()
    tables = {
        r[0] for r in sqlite3.connect(factory / ".fac" / "state.db").execute("select name from sqlite_master")
    }
    assert "check_runs" in tables and runs(factory) == []  # the real store: no run, no row planted

    # The trusted side then uses its repository (submit fetches it, kill --rm removes it): none of
    # the hooks or the fsmonitor it planted runs outside its sandbox.
    assert git(attacker, "log", "-2", "--format=%s", "fac/attacker").split("\n") == [
        "attributes",
        "honest-looking change",
    ]
    submit("attacker")
    assert git(factory, "rev-parse", "fac/attacker") == git(attacker, "rev-parse", "HEAD")
    refused = run_fac("kill", "attacker", "--rm", cwd=factory)  # it left changes: fac looks with git status
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr
    views = {w["name"]: w for w in fac_json("status", "--json", cwd=factory)["workers"]}
    assert views["attacker"]["head"] == git(attacker, "rev-parse", "HEAD")
    assert run_fac("kill", "attacker", "--rm", "--force", cwd=factory).returncode == 0
    assert not (factory / "pwned").exists(), "a program the agent planted ran on the trusted side"


@needs_bwrap
def test_a_red_branch_whose_agent_tries_to_forge_a_green_row_is_still_red(
    factory: Path, tmux_socket: str
) -> None:
    main = git(factory, "rev-parse", "main")
    forged = (
        f"mkdir -p {SUT}/tests && printf 'def test_forged():\\n    assert 1 + 1 == 3\\n'"
        f" > {SUT}/tests/test_forged.py && git add -A {SUT} && git commit -q -m forged"
        ' && echo committed > "../../runs/$FAC_WORKER/committed"'
    )
    script = pane_script(factory, "forger.sh", hostile_script(main, forged))
    tree = spawn_worker(factory, "forger", f"bash {script}")
    pane = Factory(factory).store.worker("forger").pane_id  # type: ignore[union-attr]
    wait_until_exited(tmux_socket, pane, timeout=30)
    assert (factory / ".fac" / "runs" / "forger" / "committed").exists()
    assert attempts(factory, "forger")["write-green-row"] != "exit 0"

    submit("forger")
    run_queue(factory)
    assert entries(factory)["forger"].state == "red"
    assert git(factory, "rev-parse", "main") == main
    assert "forged" in git(tree, "log", "-3", "--format=%s").split("\n")


@needs_bwrap
def test_the_honest_path_in_a_sandboxed_pane_is_unchanged(factory: Path, tmux_socket: str) -> None:
    # In its sandbox the agent edits, runs its tests, commits, merges main into its branch and
    # submits: `fac check` and `fac submit` go through its channel to the supervisor.
    run_dir = factory / ".fac" / "runs" / "honest"
    script = pane_script(
        factory,
        "honest.sh",
        "set -e\n"
        f"mkdir -p {SUT}/tests\n"
        f"printf 'def test_honest():\\n    assert 2 + 2 == 4\\n' > {SUT}/tests/test_honest.py\n"
        f"python3 -m pytest -q -p no:cacheprovider {SUT}/tests/test_honest.py"
        f" > {run_dir}/pytest.log\n"
        f"fac check > {run_dir}/check.log 2>&1\n"
        f"git add {SUT}/tests/test_honest.py\n"
        "git commit -q -m 'honest: a test'\n"
        "git merge -q --no-edit main\n"
        f"fac submit > {run_dir}/submit.log 2>&1\n"
        f"echo ok > {run_dir}/finished\n",
    )
    with running_supervisor(factory):
        tree = spawn_worker(factory, "honest", f"bash {script}")
        wait_for((run_dir / "finished").exists, 90, "the honest agent to submit")
    assert "green" in (run_dir / "check.log").read_text()
    assert "queued fac/honest" in (run_dir / "submit.log").read_text()
    assert git(factory, "rev-parse", "fac/honest") == git(tree, "rev-parse", "HEAD")  # fetched on submit

    run_queue(factory)
    assert entries(factory)["honest"].state == "merged"
    assert git(factory, "show", f"main:{SUT}/tests/test_honest.py").startswith("def test_honest")
    assert git(factory, "status", "--porcelain") == ""  # the human's checkout is clean
    assert git(tree, "rev-parse", "main") == git(factory, "rev-parse", "main")  # main reached its repository
    assert worktrees.is_agent_repo(tree)


def test_an_agent_repository_is_its_own_and_borrows_the_factorys_objects(factory: Path) -> None:
    # Without a sandbox too: refs, config and hooks the agent changes are its repository's alone.
    tree = spawn_worker(factory, "w1")
    alternates = (tree / ".git" / "objects" / "info" / "alternates").read_text().strip()
    assert Path(alternates) == (factory / ".git" / "objects").resolve()
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD") == "fac/w1"
    assert git(tree, "rev-parse", "main") == git(factory, "rev-parse", "main")
    assert git(tree, "count-objects").startswith("0 objects")  # nothing copied

    main = git(factory, "rev-parse", "main")
    sha = commit(tree, passing_test("w1"))
    git(tree, "update-ref", "refs/heads/main", sha)
    git(tree, "config", "core.hooksPath", "/nowhere")
    assert git(factory, "rev-parse", "main") == main
    assert git(factory, "rev-parse", "fac/w1") == main  # only `fac submit` brings its head over
    assert "hookspath" not in git(factory, "config", "--list").lower()

    assert fac_json("status", "--json", cwd=factory)["workers"][0]["head"] == sha  # status shows its head
    submit("w1")
    assert git(factory, "rev-parse", "fac/w1") == sha


def test_a_long_lived_process_sees_every_move_of_an_agents_head(factory: Path) -> None:
    """worktrees.shown_head asks git again only when the agent repository's ref files changed (the
    dashboard asks for every worker on every pass): a commit, refs packed, a reset back, a branch
    deleted, and an agent that rewrites its ref in place and sets the file's mtime back, are each
    seen at once by the same process."""
    import os

    tree = spawn_worker(factory, "w1")
    main = git(factory, "rev-parse", "main")
    assert worktrees.shown_head(factory, tree, "fac/w1") == main
    assert worktrees.shown_head(factory, tree, "fac/w1") == main  # asked again: the same answer
    first = commit(tree, passing_test("w1"))
    assert worktrees.shown_head(factory, tree, "fac/w1") == first
    second = commit(tree, passing_test("w1b"))
    assert worktrees.shown_head(factory, tree, "fac/w1") == second
    git(tree, "pack-refs", "--all")  # the loose ref goes, packed-refs says where it points
    assert worktrees.shown_head(factory, tree, "fac/w1") == second
    git(tree, "update-ref", "refs/heads/fac/w1", first)  # back, loose again, in the same second
    assert worktrees.shown_head(factory, tree, "fac/w1") == first
    # Same inode, same size, the old mtime put back: only the ctime says it changed.
    ref = tree / ".git" / "refs" / "heads" / "fac" / "w1"
    before = ref.stat()
    with ref.open("r+", encoding="ascii") as f:
        f.write(f"{second}\n")
    os.utime(ref, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ref.stat().st_ino == before.st_ino and ref.stat().st_mtime_ns == before.st_mtime_ns
    assert worktrees.shown_head(factory, tree, "fac/w1") == second
    git(tree, "checkout", "-q", "--detach")
    git(tree, "branch", "-D", "fac/w1")
    assert worktrees.shown_head(factory, tree, "fac/w1") is None
    assert worktrees.head(factory, tree, "fac/w1") is None


def test_main_reaches_every_agent_repository_when_the_queue_moves_it(factory: Path) -> None:
    a = spawn_worker(factory, "a")
    b = spawn_worker(factory, "b")
    commit(a, passing_test("a"))
    submit("a")
    run_queue(factory)
    assert entries(factory)["a"].state == "merged"
    main = git(factory, "rev-parse", "main")
    assert git(b, "rev-parse", "main") == main
    git(b, "merge", "-q", "--no-edit", "main")  # what the queue tells an agent whose branch conflicts
    assert (b / SUT / "tests" / "test_a.py").exists()


def test_a_main_moved_by_a_human_reaches_agent_repositories_once_the_queue_adopts_it(factory: Path) -> None:
    tree = spawn_worker(factory, "w1")
    run_queue(factory)  # the queue knows main as it is now
    sha = human_commit(factory, {"notes.md": "a human's note\n"})
    assert git(tree, "rev-parse", "main") != sha
    run_queue(factory)  # judged green, adopted
    assert git(tree, "rev-parse", "main") == sha


def test_main_is_not_published_through_a_link_the_agent_planted(factory: Path, tmp_path: Path) -> None:
    tree = spawn_worker(factory, "w1")
    outside = tmp_path / "outside"
    outside.mkdir()
    heads = tree / ".git" / "refs" / "heads"
    (heads / "main").unlink()
    heads.rename(tree / ".git" / "refs" / "heads-real")
    heads.symlink_to(outside)
    worktrees.publish_main([tree], "main", "0" * 40)
    assert list(outside.iterdir()) == []


def test_kill_rm_keeps_the_agents_last_commit_recoverable_and_down_rm_counts_unsubmitted_work(
    factory: Path,
) -> None:
    tree = spawn_worker(factory, "w1")
    sha = commit(tree, failing_test("w1"), "never submitted")
    proc = run_fac("down", "--rm", cwd=factory)
    assert proc.returncode == 2 and "fac/w1 (1 commit not on main)" in proc.stderr
    report = fac_json("kill", "w1", "--rm", "--force", "--json", cwd=factory)
    assert report["last_sha"] == sha
    assert not tree.exists() and "fac/w1" not in git(factory, "branch", "--list")
    assert git(factory, "cat-file", "-t", sha) == "commit"  # `git branch NAME SHA` brings it back


def test_status_says_plainly_when_agents_are_not_isolated(factory: Path, tmux_socket: str) -> None:
    env = {"FAC_SANDBOX": "none"}
    data = fac_json("status", "--json", cwd=factory, env=env)
    assert data["agents_isolation"] == {
        "isolated": False,
        "reason": "FAC_SANDBOX=none",
        "warning": "agents are not isolated: FAC_SANDBOX=none",
    }
    assert "agents are not isolated: FAC_SANDBOX=none" in run_fac("status", cwd=factory, env=env).stdout
    up = run_fac("up", cwd=factory, env=env)
    assert up.returncode == 0 and "agents are not isolated: FAC_SANDBOX=none" in up.stdout + up.stderr
    # The pane still runs, plainly: fac works without bubblewrap.
    report = fac_json("spawn", "worker", "--name", "w1", "--cmd", "sleep 600", "--json", cwd=factory, env=env)
    assert report["name"] == "w1"
    if not UNCONFINED:
        assert fac_json("status", "--json", cwd=factory)["agents_isolation"]["isolated"] is True


def test_the_dashboard_says_when_agents_are_not_isolated(
    factory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from supervisor import dashboard

    monkeypatch.setenv("FAC_SANDBOX", "none")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(dashboard.render(dashboard.snapshot(Factory(factory))))
    assert "agents are not isolated: FAC_SANDBOX=none" in console.export_text()


@needs_bwrap
def test_agent_network_false_cuts_the_panes_network(factory: Path, tmux_socket: str) -> None:
    toml = factory / "factory.toml"
    toml.write_text(toml.read_text() + "\n[sandbox]\nagent_network = false\n")
    git(factory, "commit", "-q", "-am", "human: no network for agents")
    cmd = 'tail -n +3 /proc/net/dev | cut -d: -f1 > "../../runs/$FAC_WORKER/net.txt"'
    report = fac_json("spawn", "worker", "--no-up", "--name", "w1", "--cmd", cmd, "--json", cwd=factory)
    wait_until_exited(tmux_socket, report["pane"])
    assert (factory / ".fac" / "runs" / "w1" / "net.txt").read_text().split() == ["lo"]


MOUNTS = [
    # (hide, seal, reveal, writable) -> mounts in order; paths are relative to a temp dir
    (
        "a tree inside a sealed .fac stays writable, the .git inside a revealed root stays sealed",
        {
            "hide": ["home"],
            "seal": ["root/.fac", "root/.git"],
            "reveal": ["root", "root/.git/objects"],
            "rw": ["root/.fac/worktrees/w"],
        },
        [
            ("home", "hide"),
            ("root", "ro"),
            ("root/.fac", "seal"),
            ("root/.git", "seal"),
            ("root/.git/objects", "ro"),
            ("root/.fac/worktrees/w", "rw"),
        ],
    ),
    (
        "on one path writable beats revealed beats hidden",
        {"hide": ["x"], "seal": [], "reveal": ["x", "y"], "rw": ["y"]},
        [("x", "ro"), ("y", "rw")],
    ),
    (
        "a hidden file or a missing path is left out",
        {"hide": ["file", "missing"], "seal": ["missing"], "reveal": ["missing"], "rw": []},
        [],
    ),
]


@pytest.mark.parametrize(("why", "given", "want"), MOUNTS, ids=[m[0] for m in MOUNTS])
def test_the_deepest_path_decides_each_mount(
    tmp_path: Path, why: str, given: dict[str, list[str]], want: list[tuple[str, str]]
) -> None:
    for rel in ("home", "root/.fac/worktrees/w", "root/.git/objects", "x", "y"):
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
    (tmp_path / "file").write_text("")
    plan = sandbox.mounts(
        hide=[tmp_path / p for p in given["hide"]],
        reveal=[tmp_path / p for p in given["reveal"]],
        writable=[tmp_path / p for p in given["rw"]],
        seal=[tmp_path / p for p in given["seal"]],
    )
    base = str(tmp_path.resolve())
    assert [(str(Path(m.path).relative_to(base)), m.kind) for m in plan] == want
    args = sandbox.bwrap_args(plan)
    sealed = [args[i + 1] for i, a in enumerate(args) if a == "--remount-ro"]
    assert sealed == [m.path for m in plan if m.kind == "seal"]


def test_an_agents_plan_hides_the_store_the_git_dir_and_home_and_lets_it_write_its_own(
    tmp_path: Path,
) -> None:
    root = tmp_path / "f"
    plan = isolation.plan(
        root=root,
        git_dir=root / ".git",
        worktree=root / ".fac" / "worktrees" / "w",
        run_dir=root / ".fac" / "runs" / "w",
        home=tmp_path / "home",
        envs=root / ".fac" / "envs",
        writable=(tmp_path / "home" / ".claude",),
        runtime_dir=Path("/run/user/1000"),
    )
    assert plan.hide == (tmp_path / "home",)
    assert plan.seal == (root / ".fac", root / ".git", Path("/run/user/1000"))
    assert plan.reveal == (root, root / ".fac" / "envs", root / ".git" / "objects")
    assert plan.writable == (
        root / ".fac" / "worktrees" / "w",
        root / ".fac" / "runs" / "w",
        tmp_path / "home" / ".claude",
    )
    assert json.dumps(isolation.status())  # plain data for --json


@needs_bwrap
def test_every_runtime_runs_sandboxed_so_no_worker_is_named_unconfined() -> None:
    got = isolation.status({"w1": "anthropic", "w2": "command", "w3": "claude"})
    assert got["isolated"] is True
    assert got["unconfined_workers"] == {}  # the anthropic runtime too: its loop speaks on its channel
