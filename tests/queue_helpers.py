"""Helpers for the merge-queue tests: workers whose branches the test writes with real git.

A worker is spawned for real (branch, worktree, tmux window on the private socket), its pane
running something harmless; the test then commits to its worktree and submits, like a scripted
agent would, and drives the queue in-process or through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from helpers import git

from supervisor import workers
from supervisor.cli import cli
from supervisor.factory import Factory
from supervisor.queue import MergeQueue

SUT = "system-under-construction"


def spawn_worker(root: Path, name: str, cmd: str = "sleep 600") -> Path:
    """A real worker (branch fac/NAME, worktree, window) running `cmd`; returns its worktree."""
    workers.spawn(Factory(root), "worker", name=name, command=cmd)
    return root / ".fac" / "worktrees" / name


def commit(worktree: Path, changes: dict[str, str | None], message: str = "change") -> str:
    """Write (or, for None, delete) files relative to the worktree, commit them, return the sha."""
    for rel, text in changes.items():
        path = worktree / rel
        if text is None:
            git(worktree, "rm", "-q", rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        git(worktree, "add", rel)
    git(worktree, "commit", "-q", "-m", message)
    return git(worktree, "rev-parse", "HEAD")


def passing_test(name: str) -> dict[str, str]:
    """A branch's own new test file, green."""
    return {f"{SUT}/tests/test_{name}.py": f"def test_{name}_works():\n    assert 1 + 1 == 2\n"}


def failing_test(name: str) -> dict[str, str]:
    """A branch's own new test file with a test that fails on an assertion."""
    return {f"{SUT}/tests/test_{name}.py": f"def test_{name}_is_wrong():\n    assert 1 + 1 == 3\n"}


def fac(*args: str) -> Result:
    """The real CLI, in-process (faster than a subprocess); the factory is the current directory."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def submit(name: str) -> int:
    res = fac("submit", "--worker", name, "--json")
    assert res.exit_code == 0, res.output
    return int(json.loads(res.stdout)["id"])


def run_queue(root: Path, **kwargs: Any) -> MergeQueue:
    """One pass of the queue until nothing is pending; returns it for its stats. One slot unless the
    test asks for more: the tests that count runs and batches describe the one-candidate queue
    (the pipeline's tests pass `slots`)."""
    kwargs.setdefault("slots", 1)
    mq = MergeQueue(Factory(root), **kwargs)
    mq.run(once=True)
    return mq


def entries(root: Path) -> dict[str, Any]:
    """The latest queue entry of each worker."""
    return {e.worker: e for e in Factory(root).store.queue()}


def worker_state(root: Path, name: str) -> str:
    w = Factory(root).store.worker(name)
    assert w is not None
    return w.state


def uncached_runs(root: Path) -> int:
    return Factory(root).store.count_runs(cached=False)


def runs(root: Path) -> list[dict[str, Any]]:
    db = Factory(root).store.db
    return [dict(r) for r in db.execute("SELECT sha, tree, stage, ok, cached FROM check_runs ORDER BY id")]


def events(root: Path, kind: str) -> list[Any]:
    return [e for e in Factory(root).store.events() if e.kind == kind]


def inbox(name: str) -> list[dict[str, Any]]:
    res = fac("inbox", "--worker", name, "--all", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def merge_commits(root: Path) -> list[str]:
    """Messages of the merge commits on main's first-parent line, newest first."""
    out = git(root, "log", "--first-parent", "--merges", "--format=%B%x00", "main")
    return [m.strip() for m in out.split("\0") if m.strip()]


def main_history(root: Path) -> list[str]:
    """Every commit main ever pointed at, from its reflog (oldest last)."""
    return git(root, "reflog", "show", "--format=%H", "refs/heads/main").split()


def assert_main_only_tested(root: Path, *humans: str) -> None:
    """Every commit main pointed at is the first commit, a human's commit (listed) or a candidate
    that has a green gate run for exactly that sha."""
    history = main_history(root)
    first = git(root, "rev-list", "--max-parents=0", "main")
    green = {r["sha"] for r in runs(root) if r["ok"] and r["stage"] == "gate"}
    untested = [sha for sha in history if sha not in (first, *humans) and sha not in green]
    assert not untested, f"main pointed at untested commits: {untested}"
    assert len(history) > 1, "main never moved"


def human_commit(root: Path, changes: dict[str, str | None], message: str = "human: change") -> str:
    """A human's commit on main in the factory root (the only way checks/ and factory.toml change)."""
    return commit(root, changes, message)


def script_suite(root: Path, scripts: dict[str, str]) -> str:
    """Replace main's suite by executables in checks/ (no pytest): for tests about the queue itself."""
    from supervisor.config import DEFAULT_TOML

    for name, text in scripts.items():
        path = root / "checks" / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    return human_commit(
        root, {"factory.toml": DEFAULT_TOML, **{f"checks/{n}": s for n, s in scripts.items()}}
    )
