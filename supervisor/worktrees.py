"""Worker worktrees: `.fac/worktrees/<worker>` on branch `fac/<worker>`, and throw-away detached ones.

Every question goes to `git` through repo.py: these run in short `fac` commands (spawn, submit,
kill --rm), where importing GitPython alone would cost more than the `git` call it wraps.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supervisor import repo
from supervisor.errors import FacError

BRANCH_PREFIX = "fac/"


@contextmanager
def detached(root: Path, path: Path, rev: str) -> Iterator[Path]:
    """A throw-away worktree of `rev` at `path` (no branch), removed however the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    repo.git(root, "worktree", "add", "--quiet", "--detach", str(path), rev)
    try:
        yield path
    finally:
        repo.git(root, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)


def branch_for(worker: str) -> str:
    return f"{BRANCH_PREFIX}{worker}"


def add(root: Path, path: Path, branch: str, base: str) -> None:
    """Create `branch` at `base` and check it out in a new worktree at `path`."""
    if repo.rev_parse(root, base) is None:
        raise FacError(
            f"base {base!r} is not a commit in {root}", hint="pass --base with a branch, tag or sha"
        )
    if branch_exists(root, branch):
        raise FacError(
            f"branch {branch} already exists",
            hint=f"remove it (git branch -D {branch}) or pick another worker name",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.git(root, "worktree", "add", "--quiet", "-b", branch, str(path), base)
    except repo.GitError as e:
        raise FacError(f"git worktree add failed: {e.message}") from None


def branch_exists(root: Path, branch: str) -> bool:
    return repo.rev_parse(root, f"refs/heads/{branch}") is not None


def is_dirty(path: Path) -> bool:
    """Uncommitted changes (tracked or untracked) in a worktree."""
    if not path.exists():
        return False
    repo.require_git()  # a missing git is a FacError with the fix, not a traceback
    return repo.is_dirty(path)


def remove(root: Path, path: Path, branch: str | None) -> str | None:
    """Remove the worktree and delete the branch; returns the branch's last sha (to recover it)."""
    if path.exists():
        try:
            repo.git(root, "worktree", "remove", "--force", str(path))
        except repo.GitError:
            shutil.rmtree(path, ignore_errors=True)
    repo.git(root, "worktree", "prune")
    sha = repo.rev_parse(root, f"refs/heads/{branch}") if branch else None
    if branch and sha:
        repo.git(root, "branch", "-D", branch)
    return sha
